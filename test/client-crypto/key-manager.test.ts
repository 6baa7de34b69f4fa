/**
 * The key manager's flows against an in-memory server: registration and restore, DIRECT and
 * GROUP round trips, batched distribution, inbox processing, lazy rotation, key requests and
 * blind search.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { EventSchema } from "../../gen/parley/v1/event_pb.ts";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { EncryptedEnvelope, Message } from "../../gen/parley/v1/message_pb.ts";
import { createClient } from "@connectrpc/connect";
import { KeyService } from "../../gen/parley/v1/key_service_pb.ts";
import { readDirectCiphertext } from "../../src/client/crypto/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { DecryptError, E2EKeyManager, PREKEY_BATCH, PREKEY_LOW_WATER, type DecryptErrorReason } from "../../src/client/e2e/index.ts";
import { FakeParley } from "./fake-parley.ts";
import { content } from "./helpers.ts";

interface TestDevice {
  readonly userId: string;
  readonly store: MemoryStore;
  readonly manager: E2EKeyManager;
}

async function openDevice(server: FakeParley, userId: string, store = new MemoryStore()): Promise<TestDevice> {
  const manager = await E2EKeyManager.open({ store, transport: server.transportFor(userId), userId, deviceName: `${userId}'s device`, onError: () => undefined });
  return { userId, store, manager };
}

/** Encrypts as device, stores the message on the fake server, returns it. */
async function send(server: FakeParley, device: TestDevice, conversationId: string, text: string): Promise<Message> {
  const { envelope } = await device.manager.encrypt(server.conversationFor(conversationId, device.userId), content(text));
  return server.post(conversationId, device.userId, envelope);
}

async function read(server: FakeParley, device: TestDevice, message: Message): Promise<string> {
  return (await device.manager.decrypt(server.conversationFor(message.conversationId, device.userId), message)).text;
}

function envelopeOf(message: Message): EncryptedEnvelope {
  return message.content.case === "envelope" ? message.content.value : assert.fail("the message has no envelope");
}

async function assertReadFails(server: FakeParley, device: TestDevice, message: Message, reason: DecryptErrorReason): Promise<void> {
  await assert.rejects(read(server, device, message), (error: unknown) => error instanceof DecryptError && error.reason === reason);
}

describe("E2E key manager", () => {
  it("registers a new device with prekeys, and restores it from the same store without registering again", async () => {
    const server = new FakeParley();
    const first = await openDevice(server, "alice");
    assert.equal(server.unclaimedPrekeys(first.manager.deviceId), PREKEY_BATCH);
    const again = await openDevice(server, "alice", first.store);
    assert.equal(again.manager.deviceId, first.manager.deviceId);
    assert.deepEqual(again.manager.signingPublicKey, first.manager.signingPublicKey);
    assert.equal(server.calls.get("registerDevice"), 1);
    assert.equal(server.unclaimedPrekeys(first.manager.deviceId), PREKEY_BATCH);
  });

  it("opens DIRECT messages on every device of the peer and the sender's other devices, and on the sending device", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const aliceTablet = await openDevice(server, "alice");
    const bobPhone = await openDevice(server, "bob");
    const bobLaptop = await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.DIRECT, ["alice", "bob"]);
    const message = await send(server, alice, conversationId, "hi Bob");
    for (const device of [alice, aliceTablet, bobPhone, bobLaptop]) assert.equal(await read(server, device, message), "hi Bob");
    assert.equal(await read(server, bobPhone, message), "hi Bob", "a stored DIRECT message reads again");
  });

  it("stops boxing DIRECT keys to a revoked device once the epoch moved on, events missed or not", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bobPhone = await openDevice(server, "bob");
    const bobLost = await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.DIRECT, ["alice", "bob"]);
    const boxedTo = (message: Message) => readDirectCiphertext(envelopeOf(message)).keyBoxes.map((keyBox) => keyBox.deviceId).sort();
    assert.deepEqual(boxedTo(await send(server, alice, conversationId, "one")), [bobPhone.manager.deviceId, bobLost.manager.deviceId].sort());
    await createClient(KeyService, server.transportFor("bob")).revokeDevice({ deviceId: bobLost.manager.deviceId });
    assert.deepEqual(boxedTo(await send(server, alice, conversationId, "two")), [bobPhone.manager.deviceId]);
  });

  it("answers a DIRECT key request from a device that joined after the message", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.DIRECT, ["alice", "bob"]);
    const message = await send(server, alice, conversationId, "before your new phone");
    const bobNew = await openDevice(server, "bob");
    await assertReadFails(server, bobNew, message, "not_for_this_device");
    await alice.manager.syncInbox();
    await bobNew.manager.syncInbox();
    assert.equal(await read(server, bobNew, message), "before your new phone");
  });

  it("distributes a GROUP sender key in one ClaimPrekeys and one SendToDevice call, and members open the messages", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const carolPhone = await openDevice(server, "carol");
    const carolLaptop = await openDevice(server, "carol");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    const first = await send(server, alice, conversationId, "hello group");
    const second = await send(server, alice, conversationId, "second");
    assert.equal(server.calls.get("claimPrekeys"), 1);
    assert.equal(server.calls.get("sendToDevice"), 1);
    assert.equal(server.inbox(bob.manager.deviceId).length, 1);
    for (const device of [bob, carolPhone, carolLaptop]) {
      await device.manager.syncInbox();
      assert.equal(server.inbox(device.manager.deviceId).length, 0, "the inbox is acknowledged");
      assert.equal(await read(server, device, second), "second");
      assert.equal(await read(server, device, first), "hello group");
    }
    assert.equal(await read(server, alice, first), "hello group", "the sender rereads its own message");
    assert.equal(await read(server, bob, first), "hello group", "a stored message reads again");
  });

  it("refuses a GROUP envelope replayed at another seq, and a tampered one", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    const original = await send(server, alice, conversationId, "pay 10");
    await bob.manager.syncInbox();
    assert.equal(await read(server, bob, original), "pay 10");
    const envelope = envelopeOf(original);
    await assertReadFails(server, bob, server.post(conversationId, "alice", envelope), "replayed");
    const tampered = { ...envelope, ciphertext: envelope.ciphertext.map((byte, i) => (i === envelope.ciphertext.length - 1 ? byte ^ 1 : byte)) };
    await assertReadFails(server, bob, server.post(conversationId, "alice", tampered), "bad_signature");
  });

  it("rotates lazily: after a removal the next send uses a new key the removed member never gets", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const carol = await openDevice(server, "carol");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    const before = await send(server, alice, conversationId, "all three");
    server.removeMember(conversationId, "carol");
    // Alice hears of no event: the new epoch alone makes her re-read who is in the group.
    const after = await send(server, alice, conversationId, "just us");
    assert.notEqual(envelopeOf(after).keyId, envelopeOf(before).keyId);
    await bob.manager.syncInbox();
    await carol.manager.syncInbox();
    assert.equal(await read(server, bob, after), "just us");
    assert.equal(await read(server, carol, before), "all three");
    await assertReadFails(server, carol, after, "unknown_key");
  });

  it("re-sends a GROUP sender key to a member's new device that asks for it", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    const message = await send(server, alice, conversationId, "before the new device");
    const bobNew = await openDevice(server, "bob");
    await assertReadFails(server, bobNew, message, "unknown_key");
    await alice.manager.syncInbox();
    await bobNew.manager.syncInbox();
    assert.equal(await read(server, bobNew, message), "before the new device");
  });

  it("sends the current sender key to a member added later, on the member_added event", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    await openDevice(server, "bob");
    const dave = await openDevice(server, "dave");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    await send(server, alice, conversationId, "before dave");
    server.addMember(conversationId, "dave");
    await alice.manager.onEvent(create(EventSchema, { conversationId, kind: { case: "memberAdded", value: { member: { userId: "dave" } } } }));
    await dave.manager.syncInbox();
    const message = await send(server, alice, conversationId, "welcome dave");
    assert.equal(await read(server, dave, message), "welcome dave");
  });

  it("blind-indexes with a key every member shares, and builds matching queries", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"], true);
    const conversation = server.conversationFor(conversationId, "alice");
    const { searchTokens } = await alice.manager.encrypt(conversation, content("Meet at the Café"));
    assert.equal(searchTokens.length, 4);
    await bob.manager.syncInbox();
    const [query, ...others] = await bob.manager.blindQueries(server.conversationFor(conversationId, "bob"), "cafe");
    assert.equal(others.length, 0);
    assert.equal(query?.keyEpoch, 1);
    assert.ok(searchTokens.some((token) => Buffer.from(token).equals(Buffer.from(query?.tokens[0] ?? []))));
    assert.deepEqual(await bob.manager.blindQueries(server.conversationFor(conversationId, "bob"), " ,. "), []);
  });

  it("hands a DIRECT conversation's search key to the peer in a sender-key-less distribution", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const conversationId = server.createConversation(ConversationType.DIRECT, ["alice", "bob"], true);
    const { searchTokens } = await alice.manager.encrypt(server.conversationFor(conversationId, "alice"), content("lunch?"));
    await bob.manager.syncInbox();
    const [query] = await bob.manager.blindQueries(server.conversationFor(conversationId, "bob"), "LUNCH");
    assert.deepEqual(query?.tokens, searchTokens);
  });

  it("deletes a prekey's secret once a payload sealed to it was handled, and tops prekeys up", async () => {
    const server = new FakeParley();
    const alice = await openDevice(server, "alice");
    const bob = await openDevice(server, "bob");
    const prekeySecrets = async () => (await bob.store.list("e2e/prekeys/secret/")).length;
    assert.equal(await prekeySecrets(), PREKEY_BATCH);
    server.discardPrekeys(bob.manager.deviceId, PREKEY_BATCH - PREKEY_LOW_WATER);
    const conversationId = server.createConversation(ConversationType.GROUP, ["alice", "bob", "carol"]);
    await send(server, alice, conversationId, "uses one of bob's prekeys");
    await bob.manager.syncInbox();
    assert.equal(await prekeySecrets(), PREKEY_BATCH - 1 + PREKEY_BATCH);
    assert.equal(server.unclaimedPrekeys(bob.manager.deviceId), PREKEY_LOW_WATER - 1 + PREKEY_BATCH);
  });
});
