/**
 * What a device does with envelopes it must not trust, after real sends through the server:
 * altered bytes, keys it never held and envelopes presented a second time all fail in the
 * SDK with the one typed DecryptError and its reason — never a bare exception, never text.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import { GroupCiphertextSchema, DirectCiphertextSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { DecryptError } from "../../src/client/e2e/index.ts";
import { assertDecryptFails, decryptEventually, freshConversation, sendAndStore, useTrio, type E2eDevice } from "./support.ts";

/** A copy of the message whose envelope went through `change`. */
function withEnvelope(message: Message, change: (envelope: Extract<Message["content"], { case: "envelope" }>["value"]) => void): Message {
  const copy = clone(MessageSchema, message);
  assert.equal(copy.content.case, "envelope", "the stored message is an envelope");
  if (copy.content.case === "envelope") change(copy.content.value);
  return copy;
}

function flipLastByte(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[out.length - 1]! ^= 0x01;
  return out;
}

describe("e2e client: envelopes a device must not trust fail with a typed DecryptError", function () {
  this.timeout(60_000);
  const trio = useTrio("decrypt");
  let alice: E2eDevice;
  let bob: E2eDevice;
  let b: string;
  let c: string;
  before(() => {
    [alice, bob] = trio().devices;
    [, b, c] = trio().ids;
  });

  async function groupMessage(text: string) {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `sealed ${randomUUID()}`, encrypted: true });
    const stored = await sendAndStore(alice, group.id, text);
    const conversation = await freshConversation(bob, group.id);
    assert.equal((await decryptEventually(bob, conversation, stored)).text, text, "the untouched message opens");
    return { conversation, stored };
  }

  it("refuses a GROUP envelope whose body was altered (tampered or bad_signature), and still opens the original", async () => {
    const { conversation, stored } = await groupMessage("group, to be altered");
    const altered = withEnvelope(stored, (envelope) => {
      const inner = fromBinary(GroupCiphertextSchema, envelope.ciphertext);
      inner.body = flipLastByte(inner.body);
      envelope.ciphertext = toBinary(GroupCiphertextSchema, inner);
    });
    // The sender signs the body, so the signature check is what catches it first.
    await assertDecryptFails(bob, conversation, altered, ["tampered", "bad_signature"], "altered group body");
    const renamed = withEnvelope(stored, (envelope) => {
      envelope.keyId = `${envelope.keyId}x`;
    });
    await assertDecryptFails(bob, conversation, renamed, ["tampered"], "envelope key_id not naming the sender key");
    assert.equal((await bob.codec.decrypt(conversation, stored)).text, "group, to be altered", "the original still opens after the refusals");
  });

  it("refuses a DIRECT envelope moved into another conversation of the same people (tampered)", async () => {
    const direct = await alice.client.createConversation({ memberIds: [b], encrypted: true });
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `moved ${randomUUID()}`, encrypted: true });
    const stored = await sendAndStore(alice, direct.id, "for Bob's eyes only");
    assert.equal((await decryptEventually(bob, await freshConversation(bob, direct.id), stored)).text, "for Bob's eyes only");
    const moved = create(MessageSchema, { ...stored, conversationId: group.id });
    await assertDecryptFails(bob, await freshConversation(bob, group.id), moved, ["tampered"], "a DM shown in a group");
  });

  it("refuses a DIRECT envelope whose body or key box was altered with reason tampered", async () => {
    const direct = await alice.client.createConversation({ memberIds: [b], encrypted: true });
    const stored = await sendAndStore(alice, direct.id, "direct, to be altered");
    const conversation = await freshConversation(bob, direct.id);
    assert.equal((await decryptEventually(bob, conversation, stored)).text, "direct, to be altered");

    const bodyAltered = withEnvelope(stored, (envelope) => {
      const inner = fromBinary(DirectCiphertextSchema, envelope.ciphertext);
      inner.body = flipLastByte(inner.body);
      envelope.ciphertext = toBinary(DirectCiphertextSchema, inner);
    });
    await assertDecryptFails(bob, conversation, bodyAltered, ["tampered"], "altered direct body");

    const boxAltered = withEnvelope(stored, (envelope) => {
      const inner = fromBinary(DirectCiphertextSchema, envelope.ciphertext);
      for (const box of inner.keyBoxes) box.boxedKey = flipLastByte(box.boxedKey);
      envelope.ciphertext = toBinary(DirectCiphertextSchema, inner);
    });
    await assertDecryptFails(bob, conversation, boxAltered, ["tampered"], "altered key box");

    const nonceAltered = withEnvelope(stored, (envelope) => {
      envelope.nonce = flipLastByte(envelope.nonce);
    });
    await assertDecryptFails(bob, conversation, nonceAltered, ["tampered"], "altered envelope nonce");
  });

  it("fails with unknown_key for a sender key the device never held", async () => {
    const { conversation, stored } = await groupMessage("group, unknown key");
    const otherKey = withEnvelope(stored, (envelope) => {
      const inner = fromBinary(GroupCiphertextSchema, envelope.ciphertext);
      inner.senderKeyId = randomUUID();
      envelope.keyId = inner.senderKeyId;
      envelope.ciphertext = toBinary(GroupCiphertextSchema, inner);
    });
    await assertDecryptFails(bob, conversation, otherKey, ["unknown_key"], "a sender key id nobody distributed");
  });

  it("fails with unknown_key on a device of a member that was registered after the message was sent", async () => {
    const { conversation, stored } = await groupMessage("sent before the second device existed");
    const late = await trio().addDevice(b);
    // The sender key reaches the new device from its current link on: earlier links never do.
    await new Promise((r) => setTimeout(r, 1_000));
    await assertDecryptFails(late, conversation, stored, ["unknown_key"], "a message from before the device existed");
  });

  it("fails with replayed when a GROUP envelope that was opened comes back as another message", async () => {
    const { conversation, stored } = await groupMessage("said once");
    assert.equal(stored.content.case, "envelope");
    if (stored.content.case !== "envelope") return;
    // The same envelope, stored again by its sender's account (as a malicious server or a
    // replaying client could): a new seq, byte-identical ciphertext.
    const res = await alice.client.messagesClient.sendMessage({
      conversationId: conversation.id,
      clientMessageId: randomUUID(),
      content: { case: "envelope", value: stored.content.value },
    });
    const replayed = res.message!;
    assert.notEqual(replayed.seq, stored.seq, "the replay is another message");
    await assertDecryptFails(bob, conversation, replayed, ["replayed"], "the envelope stored a second time");
    assert.equal((await bob.codec.decrypt(conversation, stored)).text, "said once", "reading the original again is not a replay");
  });

  it("hands the app each refused message with the DecryptError, never a bare exception", async () => {
    const { conversation, stored } = await groupMessage("seen in history");
    await alice.client.messagesClient.sendMessage({
      conversationId: conversation.id,
      clientMessageId: randomUUID(),
      content: stored.content,
    });
    const history = await bob.client.history(conversation.id);
    assert.deepEqual(history.map((m) => m.text), ["seen in history", ""]);
    const refused = history[1]!;
    assert.ok(refused.error instanceof DecryptError, `the replay carries a DecryptError, not ${String(refused.error)}`);
    assert.equal(refused.error.reason, "replayed");
  });
});
