/**
 * The key manager's flows against the real server (KeyService, ConversationService,
 * MessageService, in-process on a random port): registration and restore, DIRECT and GROUP
 * round trips, batched distribution, inbox processing, lazy rotation, key requests, blind
 * search, and reading history across a device's revocation.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { ToDevicePayloadSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { EventSchema } from "../../gen/parley/v1/event_pb.ts";
import { ConversationSchema, ConversationType, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { CodecRefusedError } from "../../src/client/codec.ts";
import { classifyFailure } from "../../src/client/rpc-errors.ts";
import type { EncryptedEnvelope, Message } from "../../gen/parley/v1/message_pb.ts";
import { createSenderKey, deserializeDeviceKeys, readDirectCiphertext, sealGroup, sealToDevice, type DeviceKeys } from "../../src/client/crypto/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { DecryptError, E2EKeyManager, PREKEY_BATCH, PREKEY_LOW_WATER, type DecryptErrorReason } from "../../src/client/e2e/index.ts";
import { startTestServer, newUsers, type TestServer } from "../helpers/test-server.ts";
import { createEncrypted, e2eClientsFor, inboxOf, sendEnvelope, unclaimedPrekeys, type E2eClients } from "../helpers/e2e.ts";
import { content } from "./helpers.ts";

interface TestDevice {
  readonly userId: string;
  readonly store: MemoryStore;
  readonly manager: E2EKeyManager;
}

describe("E2E key manager", function () {
  this.timeout(60_000);
  let server: TestServer;
  /** RPCs made by the key managers, by method name, since the test began. */
  let calls: Map<string, number>;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });
  beforeEach(() => {
    calls = new Map();
  });

  function clients(userId: string): E2eClients {
    return e2eClientsFor(server, userId);
  }

  function transportFor(userId: string): Transport {
    let token: Promise<string> | undefined;
    const bearer: Interceptor = (next) => async (request) => {
      request.header.set("authorization", `Bearer ${await (token ??= server.tokenFor(userId))}`);
      calls.set(request.method.name, (calls.get(request.method.name) ?? 0) + 1);
      return next(request);
    };
    return server.transport("connect", [bearer]);
  }

  async function openDevice(userId: string, store = new MemoryStore()): Promise<TestDevice> {
    const manager = await E2EKeyManager.open({ store, transport: transportFor(userId), userId, deviceName: `${userId}'s device`, onError: () => undefined });
    return { userId, store, manager };
  }

  /** An encrypted conversation made by the first user with the others. */
  async function createConversation(type: ConversationType, [creator, ...others]: string[], blindSearch = false): Promise<string> {
    return (await createEncrypted(clients(creator!), type, others, { blindSearch })).id;
  }

  async function conversationFor(conversationId: string, userId: string): Promise<Conversation> {
    const { conversation } = await clients(userId).conversations.getConversation({ conversationId });
    return conversation ?? assert.fail("GetConversation answered without a conversation");
  }

  /** Stores an envelope as SendMessage does, as the user. */
  function post(conversationId: string, userId: string, envelope: EncryptedEnvelope): Promise<Message> {
    return sendEnvelope(clients(userId), conversationId, envelope);
  }

  /** Encrypts as the device at the conversation's current epoch and sends it. */
  async function send(device: TestDevice, conversationId: string, text: string): Promise<Message> {
    const { envelope } = await device.manager.encrypt(await conversationFor(conversationId, device.userId), content(text));
    return post(conversationId, device.userId, envelope);
  }

  async function read(device: TestDevice, message: Message): Promise<string> {
    return (await device.manager.decrypt(await conversationFor(message.conversationId, device.userId), message)).text;
  }

  async function assertReadFails(device: TestDevice, message: Message, reason: DecryptErrorReason): Promise<void> {
    await assert.rejects(read(device, message), (error: unknown) => {
      assert.ok(error instanceof DecryptError, `expected a DecryptError, got ${String(error)}`);
      assert.equal(error.reason, reason, error.message);
      return true;
    });
  }

  async function storedKeys(device: TestDevice): Promise<DeviceKeys> {
    return deserializeDeviceKeys((await device.store.get("e2e/device/keys")) ?? assert.fail("no stored device keys"));
  }

  function boxedTo(message: Message): string[] {
    return readDirectCiphertext(envelopeOf(message)).keyBoxes.map((keyBox) => keyBox.deviceId).sort();
  }

  it("registers a new device with prekeys, and restores it from the same store without registering again", async () => {
    const [alice] = (await newUsers(server, 1, "alice")) as [string];
    const first = await openDevice(alice);
    assert.equal(await unclaimedPrekeys(clients(alice), alice, first.manager.deviceId), PREKEY_BATCH);
    const again = await openDevice(alice, first.store);
    assert.equal(again.manager.deviceId, first.manager.deviceId);
    assert.deepEqual(again.manager.signingPublicKey, first.manager.signingPublicKey);
    assert.equal(calls.get("RegisterDevice"), 1);
    assert.equal(await unclaimedPrekeys(clients(alice), alice, first.manager.deviceId), PREKEY_BATCH);
  });

  it("opens DIRECT messages on every device of the peer and the sender's other devices, and on the sending device", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "direct")) as [string, string];
    const alice = await openDevice(aliceId);
    const aliceTablet = await openDevice(aliceId);
    const bobPhone = await openDevice(bobId);
    const bobLaptop = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId]);
    const message = await send(alice, conversationId, "hi Bob");
    for (const device of [alice, aliceTablet, bobPhone, bobLaptop]) assert.equal(await read(device, message), "hi Bob");
    assert.equal(await read(bobPhone, message), "hi Bob", "a stored DIRECT message reads again");
  });

  it("boxes a DIRECT key to the sending device too, so it rereads its own messages from a store that keeps no sent keys", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "own")) as [string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId]);
    const message = await send(alice, conversationId, "note to self and Bob");
    assert.deepEqual(boxedTo(message), [alice.manager.deviceId, bob.manager.deviceId].sort());
    assert.deepEqual(await alice.store.list("e2e/sent-direct-keys/"), [], "no copy of the message key is kept");
    const restarted = await openDevice(aliceId, alice.store);
    assert.equal(await read(restarted, message), "note to self and Bob");
  });

  it("stops boxing DIRECT keys to a revoked device once the epoch moved on, events missed or not", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "revoke")) as [string, string];
    const alice = await openDevice(aliceId);
    const bobPhone = await openDevice(bobId);
    const bobLost = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId]);
    const everyone = [alice.manager.deviceId, bobPhone.manager.deviceId, bobLost.manager.deviceId].sort();
    assert.deepEqual(boxedTo(await send(alice, conversationId, "one")), everyone);
    await clients(bobId).keys.revokeDevice({ deviceId: bobLost.manager.deviceId });
    assert.deepEqual(boxedTo(await send(alice, conversationId, "two")), [alice.manager.deviceId, bobPhone.manager.deviceId].sort());
  });

  it("opens DIRECT messages a device sent before it was revoked, from a fresh run, and refuses one it sends after", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "history")) as [string, string];
    const alice = await openDevice(aliceId);
    const bobOld = await openDevice(bobId);
    await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId]);
    const before = await send(bobOld, conversationId, "sent from my old phone");
    assert.equal(await read(alice, before), "sent from my old phone");
    await clients(bobId).keys.revokeDevice({ deviceId: bobOld.manager.deviceId });
    const aliceLater = await openDevice(aliceId, alice.store);
    assert.equal(await read(aliceLater, before), "sent from my old phone", "history survives the revocation");
    const after = await send(bobOld, conversationId, "still using the revoked phone");
    await assertReadFails(aliceLater, after, "unknown_key");
  });

  it("answers a DIRECT key request from the sender's own new device, and refuses the peer's new device", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "keyreq")) as [string, string];
    const alice = await openDevice(aliceId);
    await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId]);
    const message = await send(alice, conversationId, "before the new phones");
    const aliceNew = await openDevice(aliceId);
    const bobNew = await openDevice(bobId);
    await assertReadFails(aliceNew, message, "not_for_this_device");
    await assertReadFails(bobNew, message, "not_for_this_device");
    await alice.manager.syncInbox();
    await aliceNew.manager.syncInbox();
    await bobNew.manager.syncInbox();
    assert.equal(await read(aliceNew, message), "before the new phones", "the sender's own history");
    await assertReadFails(bobNew, message, "not_for_this_device");
  });

  it("distributes a GROUP sender key in one ClaimPrekeys and one SendToDevice call, and members open the messages", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "group")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const carolPhone = await openDevice(carolId);
    const carolLaptop = await openDevice(carolId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    calls.clear();
    const first = await send(alice, conversationId, "hello group");
    const second = await send(alice, conversationId, "second");
    assert.equal(calls.get("ClaimPrekeys"), 1);
    assert.equal(calls.get("SendToDevice"), 1);
    assert.equal((await inboxOf(clients(bobId), bob.manager.deviceId)).length, 1);
    for (const device of [bob, carolPhone, carolLaptop]) {
      await device.manager.syncInbox();
      assert.equal((await inboxOf(clients(device.userId), device.manager.deviceId)).length, 0, "the inbox is acknowledged");
      assert.equal(await read(device, second), "second");
      assert.equal(await read(device, first), "hello group");
    }
    assert.equal(await read(alice, first), "hello group", "the sender rereads its own message");
    assert.equal(await read(bob, first), "hello group", "a stored message reads again");
  });

  it("refuses a GROUP envelope replayed at another seq, and a tampered one", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "replay")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    const original = await send(alice, conversationId, "pay 10");
    await bob.manager.syncInbox();
    assert.equal(await read(bob, original), "pay 10");
    const envelope = envelopeOf(original);
    await assertReadFails(bob, await post(conversationId, aliceId, envelope), "replayed");
    const tampered = { ...envelope, ciphertext: envelope.ciphertext.map((byte, i) => (i === envelope.ciphertext.length - 1 ? byte ^ 1 : byte)) };
    await assertReadFails(bob, await post(conversationId, aliceId, tampered), "bad_signature");
  });

  it("rotates lazily: after a removal the next send uses a new key the removed member never gets", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "rotate")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const carol = await openDevice(carolId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    const before = await send(alice, conversationId, "all three");
    await carol.manager.syncInbox();
    await clients(aliceId).conversations.removeMember({ conversationId, userId: carolId });
    // Alice hears of no event: the new epoch alone makes her re-read who is in the group.
    const after = await send(alice, conversationId, "just us");
    assert.notEqual(envelopeOf(after).keyId, envelopeOf(before).keyId);
    await bob.manager.syncInbox();
    await carol.manager.syncInbox();
    assert.equal(await read(bob, after), "just us");
    // Carol is no longer a member and cannot read the conversation: she opens the messages she holds with the epochs they carry.
    const carolView = { ...(await conversationFor(conversationId, aliceId)), keyEpoch: envelopeOf(before).keyEpoch };
    assert.equal((await carol.manager.decrypt(carolView, before)).text, "all three");
    await assert.rejects(carol.manager.decrypt({ ...carolView, keyEpoch: envelopeOf(after).keyEpoch }, after), (error: unknown) => error instanceof DecryptError && error.reason === "unknown_key");
  });

  it("refuses GROUP messages a revoked device signs at an epoch after its revocation, and its key for an epoch not reached", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "revgroup")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bobOld = await openDevice(bobId);
    await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    const before = await send(bobOld, conversationId, "before the revocation");
    const oldKeys = await storedKeys(bobOld);
    // While still listed, the old phone hands Alice a sender key for the epoch its revocation will start.
    const aheadKey = createSenderKey();
    const distribution = create(ToDevicePayloadSchema, {
      kind: { case: "senderKey", value: { conversationId, keyEpoch: 2, senderKeyId: aheadKey.id, index: 0, chainKey: aheadKey.chainKey } },
    });
    const sealed = await sealToDevice(distribution, oldKeys.box.secretKey, { boxPublicKey: (await storedKeys(alice)).box.publicKey });
    await clients(bobId).keys.sendToDevice({ senderDeviceId: bobOld.manager.deviceId, messages: [{ recipientDeviceId: alice.manager.deviceId, ...sealed }] });
    await alice.manager.syncInbox();
    assert.equal(await read(alice, before), "before the revocation");

    await clients(bobId).keys.revokeDevice({ deviceId: bobOld.manager.deviceId });
    const epoch = (await conversationFor(conversationId, aliceId)).keyEpoch;
    assert.equal(epoch, 2);
    const oldSenderKeyId = envelopeOf(before).keyId;
    for (const senderKey of [aheadKey, createSenderKey(), { id: oldSenderKeyId, index: 5, chainKey: new Uint8Array(32) }]) {
      const { envelope } = await sealGroup({ content: content("after"), conversationId, keyEpoch: epoch, senderDeviceId: bobOld.manager.deviceId, signingSecretKey: oldKeys.signing.secretKey, senderKey });
      const message = await post(conversationId, bobId, envelope);
      await assert.rejects(read(alice, message), (error: unknown) => error instanceof DecryptError);
    }
    assert.equal(await read(alice, before), "before the revocation", "history still opens");
  });

  it("re-sends a GROUP sender key from its first link to the sender's own new device, not to another member's", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "resend")) as [string, string, string];
    const alice = await openDevice(aliceId);
    await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    const message = await send(alice, conversationId, "before the new devices");
    const aliceNew = await openDevice(aliceId);
    const bobNew = await openDevice(bobId);
    await assertReadFails(aliceNew, message, "unknown_key");
    await assertReadFails(bobNew, message, "unknown_key");
    await alice.manager.syncInbox();
    await aliceNew.manager.syncInbox();
    await bobNew.manager.syncInbox();
    assert.equal(await read(aliceNew, message), "before the new devices", "the sender's own history");
    await assertReadFails(bobNew, message, "unknown_key");
    const later = await send(alice, conversationId, "after the new devices");
    await bobNew.manager.syncInbox();
    assert.equal(await read(bobNew, later), "after the new devices", "from the link it was given");
  });

  it("sends the current sender key to a member added later, on the member_added event", async () => {
    const [aliceId, bobId, carolId, daveId] = (await newUsers(server, 4, "added")) as [string, string, string, string];
    const alice = await openDevice(aliceId);
    await openDevice(bobId);
    const dave = await openDevice(daveId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    await send(alice, conversationId, "before dave");
    await clients(aliceId).conversations.addMembers({ conversationId, userIds: [daveId] });
    await alice.manager.onEvent(create(EventSchema, { conversationId, kind: { case: "memberAdded", value: { member: { userId: daveId } } } }));
    await dave.manager.syncInbox();
    const message = await send(alice, conversationId, "welcome dave");
    assert.equal(await read(dave, message), "welcome dave");
  });

  it("blind-indexes with a key every member shares, and builds matching queries", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "blind")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId], true);
    const { searchTokens } = await alice.manager.encrypt(await conversationFor(conversationId, aliceId), content("Meet at the Café"));
    assert.equal(searchTokens.length, 4);
    await bob.manager.syncInbox();
    const bobView = await conversationFor(conversationId, bobId);
    const [query, ...others] = await bob.manager.blindQueries(bobView, "cafe");
    assert.equal(others.length, 0);
    assert.equal(query?.keyEpoch, 1);
    assert.ok(searchTokens.some((token) => Buffer.from(token).equals(Buffer.from(query?.tokens[0] ?? []))));
    assert.deepEqual(await bob.manager.blindQueries(bobView, " ,. "), []);
  });

  it("hands a DIRECT conversation's search key to the peer in a sender-key-less distribution", async () => {
    const [aliceId, bobId] = (await newUsers(server, 2, "dblind")) as [string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.DIRECT, [aliceId, bobId], true);
    const { searchTokens } = await alice.manager.encrypt(await conversationFor(conversationId, aliceId), content("lunch?"));
    await bob.manager.syncInbox();
    const [query] = await bob.manager.blindQueries(await conversationFor(conversationId, bobId), "LUNCH");
    assert.deepEqual(query?.tokens, searchTokens);
  });

  it("deletes a prekey's secret once a payload sealed to it was handled, and tops prekeys up", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "prekeys")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const prekeySecrets = async () => (await bob.store.list("e2e/prekeys/secret/")).length;
    assert.equal(await prekeySecrets(), PREKEY_BATCH);
    const conversationId = await createConversation(ConversationType.GROUP, [aliceId, bobId, carolId]);
    // Carol's client claims prekeys of Bob's device (as other senders would) until the low-water mark.
    for (let i = 0; i < PREKEY_BATCH - PREKEY_LOW_WATER; i++) await clients(carolId).keys.claimPrekeys({ deviceIds: [bob.manager.deviceId] });
    assert.equal(await unclaimedPrekeys(clients(bobId), bobId, bob.manager.deviceId), PREKEY_LOW_WATER);
    await send(alice, conversationId, "uses one of bob's prekeys");
    await bob.manager.syncInbox();
    assert.equal(await prekeySecrets(), PREKEY_BATCH - 1 + PREKEY_BATCH);
    assert.equal(await unclaimedPrekeys(clients(bobId), bobId, bob.manager.deviceId), PREKEY_LOW_WATER - 1 + PREKEY_BATCH);
  });

  /** Seals a payload from the device (its stored keys) to the recipient's claimed prekey, and sends it. */
  async function sendPayload(from: TestDevice, to: TestDevice, payload: ReturnType<typeof create<typeof ToDevicePayloadSchema>>): Promise<number> {
    const { claimed } = await clients(from.userId).keys.claimPrekeys({ deviceIds: [to.manager.deviceId] });
    const prekey = claimed[0]?.prekey ?? assert.fail("no prekey to claim");
    const sealed = await sealToDevice(payload, (await storedKeys(from)).box.secretKey, { boxPublicKey: (await storedKeys(to)).box.publicKey, prekey });
    await clients(from.userId).keys.sendToDevice({ senderDeviceId: from.manager.deviceId, messages: [{ recipientDeviceId: to.manager.deviceId, ...sealed }] });
    return prekey.keyId;
  }

  function distributionPayload(conversationId: string, chainKey: Uint8Array) {
    return create(ToDevicePayloadSchema, { kind: { case: "senderKey", value: { conversationId, keyEpoch: 1, senderKeyId: createSenderKey().id, index: 0, chainKey } } });
  }

  it("acknowledges a to-device payload that can never be handled: a malformed chain key, a conversation the user left", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "poison")) as [string, string, string];
    const alice = await openDevice(aliceId);
    const bob = await openDevice(bobId);
    const kept = await createConversation(ConversationType.GROUP, [bobId, aliceId, carolId]);
    const left = await createConversation(ConversationType.GROUP, [bobId, aliceId, carolId]);
    await clients(aliceId).conversations.removeMember({ conversationId: left, userId: aliceId });
    await sendPayload(bob, alice, distributionPayload(kept, new Uint8Array(16)));
    const prekeyId = await sendPayload(bob, alice, distributionPayload(left, createSenderKey().chainKey));
    await alice.manager.syncInbox();
    assert.equal((await inboxOf(clients(aliceId), alice.manager.deviceId)).length, 0, "both were acknowledged, not left to be retried at every drain");
    assert.equal(await alice.store.get(`e2e/prekeys/secret/${String(prekeyId).padStart(12, "0")}`), undefined, "the opened payload's prekey secret is gone");
  });

  it("does not process a to-device message again when the feed announces one the drain already handled", async () => {
    const [aliceId, bobId, carolId] = (await newUsers(server, 3, "replay")) as [string, string, string];
    const errors: unknown[] = [];
    const store = new MemoryStore();
    const alice = { userId: aliceId, store, manager: await E2EKeyManager.open({ store, transport: transportFor(aliceId), userId: aliceId, deviceName: "alice", onError: (e) => errors.push(e) }) };
    const bob = await openDevice(bobId);
    const conversationId = await createConversation(ConversationType.GROUP, [bobId, aliceId, carolId]);
    await sendPayload(bob, alice, distributionPayload(conversationId, createSenderKey().chainKey));
    const [message] = await inboxOf(clients(aliceId), alice.manager.deviceId);
    await alice.manager.syncInbox();
    assert.deepEqual(errors, []);
    await alice.manager.onEvent(create(EventSchema, { kind: { case: "toDeviceMessage", value: { message } } }));
    assert.deepEqual(errors, [], "the replayed event was skipped, not opened again with its used prekey");
  });

  it("refuses for good (the outbox fails the send, not retries it) to encrypt a plain conversation or for a peer without devices", async () => {
    const [aliceId, deviceless] = (await newUsers(server, 2, "refuse")) as [string, string];
    const alice = await openDevice(aliceId);
    const refusedForGood = (error: unknown) => error instanceof CodecRefusedError && classifyFailure(error) === "permanent";
    const plain = create(ConversationSchema, { id: "plain", type: ConversationType.GROUP, encrypted: false });
    await assert.rejects(alice.manager.encrypt(plain, content("x")), refusedForGood);
    const direct = create(ConversationSchema, { id: "direct", type: ConversationType.DIRECT, encrypted: true, keyEpoch: 1, directPeerId: deviceless });
    await assert.rejects(alice.manager.encrypt(direct, content("x")), refusedForGood);
  });
});

function envelopeOf(message: Message): EncryptedEnvelope {
  return message.content.case === "envelope" ? message.content.value : assert.fail("the message has no envelope");
}
