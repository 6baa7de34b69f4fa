/**
 * Key requests through the real server's to-device inboxes, and what they may restore. A key
 * request gives back keys a device had (or, for the sender's own devices, the sender's own
 * history), never history it was not there for: another user's device gets a sender key only
 * from the link it was first given, and a DIRECT message's key only if it existed when the
 * message was sent.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { DecryptErrorReason } from "../../src/client/e2e/index.ts";
import { decryptEventually, freshConversation, sendAndStore, tryDecrypt, useTrio, type E2eDevice } from "./support.ts";

/** How long a refused request is given to (wrongly) come back before the test trusts the refusal. */
const REFUSAL_WAIT_MS = 1500;

/** Forgets what the device holds of the sender device's sender keys, as a restore from an old backup would. */
async function loseSenderKeys(device: E2eDevice, senderDeviceId: string): Promise<void> {
  const sender = encodeURIComponent(senderDeviceId);
  for (const prefix of [`e2e/chains/${sender}/`, `e2e/opened-group-keys/${sender}/`]) {
    for (const [key] of await device.store.list(prefix)) await device.store.delete(key);
  }
}

/** Asserts the message keeps failing with this reason while key requests come and go. */
async function assertStaysUnreadable(device: E2eDevice, conversation: Conversation, message: Message, reason: DecryptErrorReason, what: string): Promise<void> {
  const deadline = Date.now() + REFUSAL_WAIT_MS;
  do {
    const result = await tryDecrypt(device, conversation, message);
    assert.equal(result.ok, false, `${what}: it opened to ${result.ok ? JSON.stringify(result.content.text) : ""}`);
    if (!result.ok) assert.equal(result.reason, reason, what);
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
}

describe("e2e client: key requests restore keys a device had, never history it was not there for", function () {
  this.timeout(60_000);
  const trio = useTrio("keyreq");
  let alice: E2eDevice;
  let bob: E2eDevice;
  let a: string;
  let b: string;
  let c: string;
  before(() => {
    [alice, bob] = trio().devices;
    [a, b, c] = trio().ids;
  });
  const lateDevice = (userId: string) => trio().addDevice(userId);
  const holdsSenderKeyOf = async (device: E2eDevice, sender: E2eDevice) => (await device.store.list(`e2e/chains/${encodeURIComponent(sender.deviceId)}/`)).length > 0;

  it("gives a device that lost its sender-key state the key again, so it reads the messages again", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `group ${randomUUID()}`, encrypted: true });
    const first = await sendAndStore(alice, group.id, "first, before the restore");
    const second = await sendAndStore(alice, group.id, "second, before the restore");
    const conversation = await freshConversation(bob, group.id);
    assert.equal((await decryptEventually(bob, conversation, first)).text, "first, before the restore");
    assert.equal((await decryptEventually(bob, conversation, second)).text, "second, before the restore");

    await loseSenderKeys(bob, alice.deviceId);
    const lost = await tryDecrypt(bob, conversation, first);
    assert.equal(lost.ok, false, "with its state gone the device cannot open the message");
    if (!lost.ok) assert.equal(lost.reason, "unknown_key");
    assert.equal((await decryptEventually(bob, conversation, first)).text, "first, before the restore", "the sender answered with the link bob was first given");
    assert.equal((await decryptEventually(bob, conversation, second)).text, "second, before the restore");
  });

  it("lets a new device of another member read what was sent after it existed, and nothing from before", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `group ${randomUUID()}`, encrypted: true });
    const before = await sendAndStore(alice, group.id, "sent before the tablet existed");
    const tablet = await lateDevice(b);
    await tablet.waitUntil(() => holdsSenderKeyOf(tablet, alice), "the tablet holds alice's sender key (from its current link)");
    const after = await sendAndStore(alice, group.id, "sent after the tablet existed");
    const conversation = await freshConversation(tablet, group.id);
    assert.equal((await decryptEventually(tablet, conversation, after)).text, "sent after the tablet existed");
    await assertStaysUnreadable(tablet, conversation, before, "unknown_key", "a message from before the tablet existed");

    // Even asking outright (its state gone, so it asks for the whole key) brings back only the link it was given.
    await loseSenderKeys(tablet, alice.deviceId);
    await assertStaysUnreadable(tablet, conversation, before, "unknown_key", "a message from before the tablet existed, after a key request");
    assert.equal((await decryptEventually(tablet, conversation, after)).text, "sent after the tablet existed", "the request was answered, from the tablet's own link");
  });

  it("lets the sender's own new device read the sender's earlier GROUP and DIRECT messages through a key request", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `group ${randomUUID()}`, encrypted: true });
    const groupOld = await sendAndStore(alice, group.id, "group, before alice's tablet");
    const direct = await alice.client.createConversation({ memberIds: [c], encrypted: true });
    const directOld = await sendAndStore(alice, direct.id, "direct, before alice's tablet");
    const ownTablet = await lateDevice(a);
    assert.equal((await decryptEventually(ownTablet, await freshConversation(ownTablet, group.id), groupOld)).text, "group, before alice's tablet");
    assert.equal((await decryptEventually(ownTablet, await freshConversation(ownTablet, direct.id), directOld)).text, "direct, before alice's tablet");
    assert.deepEqual(ownTablet.codecErrors, [], "nothing was dropped on the way");
  });

  it("does not give a new device of the DIRECT peer the keys of messages from before it existed", async () => {
    const direct = await alice.client.createConversation({ memberIds: [c], encrypted: true });
    const before = await sendAndStore(alice, direct.id, "direct, before the laptop existed");
    const laptop = await lateDevice(c);
    const conversation = await freshConversation(laptop, direct.id);
    await assertStaysUnreadable(laptop, conversation, before, "not_for_this_device", "a DIRECT message from before the laptop existed");
    const after = await sendAndStore(alice, direct.id, "direct, after the laptop existed");
    assert.equal((await decryptEventually(laptop, conversation, after)).text, "direct, after the laptop existed");
  });
});
