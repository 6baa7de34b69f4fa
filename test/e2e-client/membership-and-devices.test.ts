/**
 * Who can read what after the group changes, against the real server: a removed member and a
 * member who left get nothing they can open (even handed the raw envelopes by someone else); a
 * device registered after the group talked reads the new messages; a revoked device reads
 * nothing new while its owner's other device still does.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { PlainContentSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import type { EncryptedEnvelope, Message } from "../../gen/parley/v1/message_pb.ts";
import { newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { allLive, assertDecryptFails, decryptEventually, freshConversation, openDevice, sendAndStore, type E2eDevice } from "./support.ts";

describe("e2e client: members and devices coming and going", function () {
  this.timeout(90_000);
  let server: TestServer;
  const devices: E2eDevice[] = [];

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await server?.stop();
  });

  async function open(userId: string): Promise<E2eDevice> {
    const d = await openDevice(server, userId);
    devices.push(d);
    return d;
  }

  /** A four-member encrypted group that has talked (every member read alice's message). */
  async function talkingGroup() {
    const [a, b, c, d] = await newUsers(server, 4, "members");
    const [alice, bob, carol, dave] = [await open(a!), await open(b!), await open(c!), await open(d!)];
    await allLive([alice, bob, carol, dave]);
    const group = await alice.client.createConversation({ memberIds: [b!, c!, d!], name: `group ${randomUUID()}`, encrypted: true });
    const first = await sendAndStore(alice, group.id, "before the change");
    for (const reader of [bob, carol, dave]) assert.equal((await decryptEventually(reader, await freshConversation(reader, group.id), first)).text, "before the change");
    await sendAndStore(bob, group.id, "bob before the change");
    return { group, alice, bob, carol, dave };
  }

  /** Sends from each sender after the change; the remaining reader opens them all. */
  async function sendAfter(senders: E2eDevice[], reader: E2eDevice, conversationId: string): Promise<Message[]> {
    const sent: Message[] = [];
    for (const sender of senders) sent.push(await sendAndStore(sender, conversationId, `after the change, from ${sender.userId}`));
    const conversation = await freshConversation(reader, conversationId);
    for (const m of sent) assert.equal((await decryptEventually(reader, conversation, m)).text, `after the change, from ${m.senderId}`);
    return sent;
  }

  it("gives a removed member's device nothing it can open after the removal", async () => {
    const { group, alice, bob, carol, dave } = await talkingGroup();
    const before = await freshConversation(alice, group.id);
    await alice.client.conversationsClient.removeMember({ conversationId: group.id, userId: dave.userId });
    const after = await freshConversation(alice, group.id);
    assert.ok(after.keyEpoch > before.keyEpoch, "the removal moved the key epoch on");
    const sent = await sendAfter([alice, bob], carol, group.id);
    await new Promise((r) => setTimeout(r, 500)); // anything that would reach dave has had time to
    // Dave kept his keys; carol hands him the raw envelopes. The conversation as dave last saw it.
    for (const m of sent) await assertDecryptFails(dave, before, m, ["unknown_key", "stale_epoch"], `dave opening #${m.seq}`);
    for (const m of sent) await assertDecryptFails(dave, after, m, ["unknown_key", "stale_epoch"], `dave opening #${m.seq} (current epoch)`);
  });

  it("gives a member who left nothing they can open after leaving", async () => {
    const { group, alice, bob, carol, dave } = await talkingGroup();
    const before = await freshConversation(dave, group.id);
    await dave.client.conversationsClient.removeMember({ conversationId: group.id, userId: dave.userId });
    const sent = await sendAfter([alice, bob], carol, group.id);
    await new Promise((r) => setTimeout(r, 500));
    for (const m of sent) await assertDecryptFails(dave, before, m, ["unknown_key", "stale_epoch"], `dave opening #${m.seq} after leaving`);
  });

  it("lets a device registered after the group talked read the new messages", async () => {
    const { group, alice, bob, carol } = await talkingGroup();
    const laptop = await open(carol.userId);
    await allLive([laptop]);
    const sent = await sendAfter([alice, bob], carol, group.id);
    const conversation = await freshConversation(laptop, group.id);
    for (const m of sent) assert.equal((await decryptEventually(laptop, conversation, m)).text, `after the change, from ${m.senderId}`);
    await laptop.waitUntil(() => laptop.messages(group.id).filter((m) => m.error === undefined && m.text.startsWith("after the change")).length === 2, "the new device's session shows both");
  });

  it("lets a revoked device read nothing new while its owner's other device still can", async () => {
    const { group, alice, bob, carol } = await talkingGroup();
    const phone = await open(carol.userId);
    await allLive([phone]);
    const early = await sendAndStore(alice, group.id, "while the phone was trusted");
    assert.equal((await decryptEventually(phone, await freshConversation(phone, group.id), early)).text, "while the phone was trusted");
    const before = await freshConversation(phone, group.id);
    await server.clientsFor(carol.userId).keys.revokeDevice({ deviceId: phone.deviceId });
    const sent = await sendAfter([alice, bob], carol, group.id);
    await new Promise((r) => setTimeout(r, 500));
    for (const m of sent) await assertDecryptFails(phone, before, m, ["unknown_key", "stale_epoch"], `the revoked phone opening #${m.seq}`);

    // The phone heard of its own revocation: what it tries to send fails for good, at once.
    const attempt = await phone.client.send(group.id, { text: "from a revoked phone" });
    await assert.rejects(attempt.message, /revoked/, "the revoked phone's send is refused");
    assert.ok(phone.events.some((e) => e.type === "send_failed" && e.localId === attempt.localId), "and the app is told");
  });

  it("refuses a DIRECT message a revoked device wrote after its revocation, even when the epoch moved on again and the events were missed", async () => {
    const [a, c] = (await newUsers(server, 2, "revokeddm")) as [string, string];
    const alice = await openDevice(server, a, { start: false }); // hears no event: reads only
    const aliceSpare = await open(a);
    const carolLaptop = await open(c);
    const phone = await openDevice(server, c, { start: false }); // a stolen phone: it never hears it was revoked
    devices.push(alice, phone);
    const direct = await carolLaptop.client.createConversation({ memberIds: [a], encrypted: true });
    const before = await phone.codec.encrypt(await freshConversation(phone, direct.id), create(PlainContentSchema, { text: "from the phone, while trusted" }));
    const trusted = await storeEnvelope(phone, direct.id, before.envelope);
    assert.equal((await decryptEventually(alice, await freshConversation(alice, direct.id), trusted)).text, "from the phone, while trusted");

    await server.clientsFor(c).keys.revokeDevice({ deviceId: phone.deviceId });
    const afterRevocation = await phone.codec.encrypt(await freshConversation(phone, direct.id), create(PlainContentSchema, { text: "from the phone, revoked" }));
    const forged = await storeEnvelope(phone, direct.id, afterRevocation.envelope);
    await server.clientsFor(a).keys.revokeDevice({ deviceId: aliceSpare.deviceId }); // the epoch moves on again

    // Alice's device starts again from its store, having heard none of it.
    const aliceAgain = await openDevice(server, a, { store: alice.store, start: false });
    devices.push(aliceAgain);
    const now = await freshConversation(aliceAgain, direct.id);
    assert.equal(now.keyEpoch, 3, "two revocations later");
    await assertDecryptFails(aliceAgain, now, forged, ["unknown_key"], "written by the phone after it was revoked");
    assert.equal((await aliceAgain.codec.decrypt(now, trusted)).text, "from the phone, while trusted", "what it wrote before still opens");
  });
});

/** Stores an envelope as the device's user, as a device that skips the SDK's outbox would. */
async function storeEnvelope(device: E2eDevice, conversationId: string, envelope: EncryptedEnvelope): Promise<Message> {
  const { message } = await device.client.messagesClient.sendMessage({ conversationId, clientMessageId: randomUUID(), content: { case: "envelope", value: envelope } });
  return message!;
}
