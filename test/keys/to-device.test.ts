/**
 * The per-device inbox (KeyService.SendToDevice, ListToDeviceMessages, AckToDeviceMessages):
 * a device sends sealed payloads to many devices in one call, only to non-revoked devices of
 * users it shares a conversation with (else NOT_FOUND and nothing is sent). Each payload waits
 * in its device's inbox, byte for byte, oldest first, and is announced on the recipient user's
 * feed, until the device acknowledges it.
 */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ToDeviceMessage } from "../../gen/parley/v1/device_pb.ts";
import type { OutgoingToDeviceMessage } from "../../gen/parley/v1/key_service_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectCode, expectInvalidArgument, expectOneOfCodes } from "../helpers/expect.ts";
import { absentIdLike, createGroup } from "../helpers/fixtures.ts";
import { openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertBytes, e2eClientsFor, inboxOf, registerDevice, type E2eClients, type RegisteredDevice } from "../helpers/e2e.ts";

const ALGORITHM = "x25519-xsalsa20-poly1305";

type Outgoing = Omit<OutgoingToDeviceMessage, "$typeName" | "$unknown">;

/** A payload sealed from the sender device to the recipient's box key (prekey_id 0). */
function sealToBoxKey(from: RegisteredDevice, to: RegisteredDevice, text: string): Outgoing {
  const nonce = nacl.randomBytes(nacl.box.nonceLength);
  const ciphertext = nacl.box(new TextEncoder().encode(text), nonce, to.keys.box.publicKey, from.keys.box.secretKey);
  return { recipientDeviceId: to.id, ciphertext, nonce, algorithm: ALGORITHM, prekeyId: 0 };
}

/** An opaque payload: every byte value, then some random ones. */
function opaque(to: RegisteredDevice, prekeyId = 0): Outgoing {
  const ciphertext = new Uint8Array(256 + 40);
  for (let i = 0; i < 256; i++) ciphertext[i] = i;
  ciphertext.set(nacl.randomBytes(40), 256);
  return { recipientDeviceId: to.id, ciphertext, nonce: nacl.randomBytes(24), algorithm: ALGORITHM, prekeyId };
}

/** Asserts the stored message is the sent payload, byte for byte, with the sender's ids. */
function assertDelivered(m: ToDeviceMessage | undefined, sent: Outgoing, sender: { userId: string; deviceId: string }, id: string, what: string): void {
  assert.ok(m, `${what}: not there`);
  assert.equal(m.id, id, `${what}: id`);
  assert.equal(m.recipientDeviceId, sent.recipientDeviceId, `${what}: recipient_device_id`);
  assert.equal(m.senderUserId, sender.userId, `${what}: sender_user_id`);
  assert.equal(m.senderDeviceId, sender.deviceId, `${what}: sender_device_id`);
  assertBytes(m.ciphertext, sent.ciphertext, `${what}: ciphertext`);
  assertBytes(m.nonce, sent.nonce, `${what}: nonce`);
  assert.equal(m.algorithm, sent.algorithm, `${what}: algorithm`);
  assert.equal(m.prekeyId, sent.prekeyId, `${what}: prekey_id`);
  assert.ok(m.createdAt, `${what}: created_at is set`);
  assert.ok(Math.abs(timestampMs(m.createdAt) - Date.now()) < 5 * 60_000, `${what}: created_at is about now`);
}

describe("KeyService: to-device messages", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await startRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });
  after(async () => {
    await server?.stop();
  });

  /** Ada, Bob and Cy in one group, with Ada's two devices, Bob's two and Cy's one; Dave shares nothing with them. */
  async function world(protocol: Protocol, prefix: string) {
    const [ada, bob, cy, dave] = (await newUsers(server, 4, prefix)) as [string, string, string, string];
    const as = (u: string): E2eClients => e2eClientsFor(server, u, protocol);
    const A = as(ada), B = as(bob), C = as(cy), D = as(dave);
    const group = await createGroup(A, [bob, cy]);
    await createGroup(D, [...(await newUsers(server, 2, `${prefix}-own`))]);
    return {
      ada, bob, cy, dave, A, B, C, D, group,
      a1: await registerDevice(A, 2, "ada 1"),
      a2: await registerDevice(A, 2, "ada 2"),
      b1: await registerDevice(B, 2, "bob 1"),
      b2: await registerDevice(B, 2, "bob 2"),
      c1: await registerDevice(C, 2, "cy 1"),
      d1: await registerDevice(D, 2, "dave 1"),
    };
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("delivers a batch for many devices in one call, each payload to its own device's inbox byte for byte", async () => {
        const w = await world(protocol, "batch");
        // Seal to claimed one-time prekeys where there are some, and to the box key of Ada's own other device.
        const claimed = (await w.A.keys.claimPrekeys({ deviceIds: [w.b1.id, w.b2.id, w.c1.id] })).claimed;
        const recipients = [w.b1, w.b2, w.c1];
        const outgoing: Outgoing[] = recipients.map((to, i) => {
          const prekey = claimed[i]!.prekey!;
          const nonce = nacl.randomBytes(nacl.box.nonceLength);
          const ciphertext = nacl.box(new TextEncoder().encode(`to ${to.device.displayName}`), nonce, prekey.publicKey, w.a1.keys.box.secretKey);
          return { recipientDeviceId: to.id, ciphertext, nonce, algorithm: ALGORITHM, prekeyId: prekey.keyId };
        });
        outgoing.push(sealToBoxKey(w.a1, w.a2, "to ada 2"));
        const res = await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: outgoing });
        assert.equal(res.messageIds.length, 4, "one id per message, in request order");
        assert.equal(new Set(res.messageIds).size, 4, "distinct ids");
        assert.ok(res.messageIds.every((id) => id !== ""), "no empty id");

        const owners: Array<[E2eClients, RegisteredDevice]> = [[w.B, w.b1], [w.B, w.b2], [w.C, w.c1], [w.A, w.a2]];
        for (const [i, [clients, device]] of owners.entries()) {
          const inbox = await inboxOf(clients, device.id);
          assert.equal(inbox.length, 1, `${device.device.displayName}: exactly its own message`);
          assertDelivered(inbox[0], outgoing[i]!, { userId: w.ada, deviceId: w.a1.id }, res.messageIds[i]!, device.device.displayName);
          // The recipient opens it as a client does: with the prekey secret (or its box key) and the sender's box key.
          const m = inbox[0]!;
          const secret = m.prekeyId === 0 ? device.keys.box.secretKey : device.keys.prekeySecrets.get(m.prekeyId)!;
          const opened = nacl.box.open(m.ciphertext, m.nonce, w.a1.device.boxPublicKey, secret);
          assert.ok(opened, `${device.device.displayName}: the payload opens`);
          assert.equal(new TextDecoder().decode(opened), `to ${device.device.displayName}`);
        }
        assert.deepEqual(await inboxOf(w.A, w.a1.id), [], "nothing came back to the sending device");
      });

      it("announces each message on the recipient user's feed as a to_device_message, byte for byte", async () => {
        const w = await world(protocol, "feed");
        const feed = await openLiveFeed(server.clientsFor(w.bob, protocol), { label: `bob/${protocol}` });
        feeds.push(feed);
        const outgoing = [opaque(w.b1, 7), opaque(w.b2)];
        const ids = (await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: outgoing })).messageIds;
        for (const [i, id] of ids.entries()) {
          const { value: event } = await feed.waitFor(
            (f) => (f.case === "event" && f.value.kind.case === "toDeviceMessage" && f.value.kind.value.message?.id === id ? f.value : undefined),
            `to_device_message ${id}`,
          );
          assert.equal(event.kind.case, "toDeviceMessage");
          if (event.kind.case !== "toDeviceMessage") continue;
          assertDelivered(event.kind.value.message, outgoing[i]!, { userId: w.ada, deviceId: w.a1.id }, id, `event for ${outgoing[i]!.recipientDeviceId}`);
        }
      });

      it("refuses the whole call with NOT_FOUND when one recipient shares no conversation with the sender, and sends nothing", async () => {
        const w = await world(protocol, "stranger");
        await expectCode(
          w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1), opaque(w.d1), opaque(w.c1)] }),
          Code.NotFound,
        );
        assert.deepEqual(await inboxOf(w.B, w.b1.id), [], "bob's device got nothing");
        assert.deepEqual(await inboxOf(w.C, w.c1.id), [], "cy's device got nothing");
        assert.deepEqual(await inboxOf(w.D, w.d1.id), [], "dave's device got nothing");
      });

      it("refuses a revoked recipient with NOT_FOUND and sends nothing", async () => {
        const w = await world(protocol, "revokedto");
        await w.B.keys.revokeDevice({ deviceId: w.b2.id });
        await expectCode(w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1), opaque(w.b2)] }), Code.NotFound);
        assert.deepEqual(await inboxOf(w.B, w.b1.id), [], "the other recipient got nothing");
      });

      it("refuses a recipient device that does not exist with NOT_FOUND", async () => {
        const w = await world(protocol, "nodevice");
        const ghost = { ...opaque(w.b1), recipientDeviceId: absentIdLike(w.b1.id) };
        await expectCode(w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.c1), ghost] }), Code.NotFound);
        assert.deepEqual(await inboxOf(w.C, w.c1.id), [], "the real recipient got nothing");
      });

      it("stops sending to a user once the only conversation they shared is left", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "left")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol), B = e2eClientsFor(server, bob, protocol);
        const group = await createGroup(A, [bob, cy]);
        const a1 = await registerDevice(A), b1 = await registerDevice(B);
        await A.keys.sendToDevice({ senderDeviceId: a1.id, messages: [opaque(b1)] });
        await B.conversations.removeMember({ conversationId: group.id, userId: bob });
        await expectCode(A.keys.sendToDevice({ senderDeviceId: a1.id, messages: [opaque(b1)] }), Code.NotFound);
        assert.equal((await inboxOf(B, b1.id)).length, 1, "only the message sent while they shared the group");
      });

      it("refuses a sender device that is not the caller's with PERMISSION_DENIED, and sends nothing", async () => {
        const w = await world(protocol, "notmine");
        await expectCode(w.A.keys.sendToDevice({ senderDeviceId: w.b1.id, messages: [opaque(w.c1), opaque(w.b2)] }), Code.PermissionDenied);
        assert.deepEqual(await inboxOf(w.C, w.c1.id), [], "cy's device got nothing");
        assert.deepEqual(await inboxOf(w.B, w.b2.id), [], "bob's device got nothing");
      });

      it("refuses a revoked sender device, and sends nothing", async () => {
        const w = await world(protocol, "revokedfrom");
        await w.A.keys.revokeDevice({ deviceId: w.a2.id });
        // The contract says the sender "must be the caller's and not revoked" without naming the code.
        await expectOneOfCodes(
          w.A.keys.sendToDevice({ senderDeviceId: w.a2.id, messages: [opaque(w.b1)] }),
          [Code.PermissionDenied, Code.FailedPrecondition, Code.NotFound],
        );
        assert.deepEqual(await inboxOf(w.B, w.b1.id), [], "bob's device got nothing");
      });

      it("pages a device's inbox oldest first", async () => {
        const w = await world(protocol, "pages");
        const sent: Array<{ id: string; out: Outgoing }> = [];
        // Seven messages over four calls, from two senders, one batch of three among them.
        const calls: Array<[E2eClients, RegisteredDevice, number]> = [[w.A, w.a1, 1], [w.C, w.c1, 3], [w.A, w.a2, 2], [w.C, w.c1, 1]];
        for (const [clients, from, n] of calls) {
          const out = Array.from({ length: n }, () => opaque(w.b1));
          const ids = (await clients.keys.sendToDevice({ senderDeviceId: from.id, messages: out })).messageIds;
          ids.forEach((id, i) => sent.push({ id, out: out[i]! }));
        }
        const pages: string[][] = [];
        let pageToken = "";
        do {
          const res = await w.B.keys.listToDeviceMessages({ deviceId: w.b1.id, pageSize: 3, pageToken });
          pages.push(res.messages.map((m) => m.id));
          for (const m of res.messages) {
            const s = sent.find((x) => x.id === m.id);
            assert.ok(s, `${m.id} is a message that was sent`);
            assertBytes(m.ciphertext, s.out.ciphertext, `${m.id}: ciphertext`);
          }
          pageToken = res.nextPageToken;
          assert.ok(pages.length < 10, "the pages end");
        } while (pageToken);
        assert.deepEqual(pages.flat(), sent.map((s) => s.id), "oldest first, each once");
        assert.ok(pages.every((p) => p.length <= 3), "no page over page_size");
        assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
      });

      it("keeps messages until acknowledged; acknowledging deletes them, and acknowledging again changes nothing", async () => {
        const w = await world(protocol, "ack");
        const ids = (await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1), opaque(w.b1), opaque(w.b1)] })).messageIds;
        const listed = async () => (await inboxOf(w.B, w.b1.id)).map((m) => m.id);
        assert.deepEqual(await listed(), ids);
        assert.deepEqual(await listed(), ids, "listing leaves them in place");
        assert.equal((await w.B.keys.ackToDeviceMessages({ deviceId: w.b1.id, messageIds: [ids[0]!, ids[2]!] })).deleted, 2);
        assert.deepEqual(await listed(), [ids[1]], "the acknowledged ones are gone");
        assert.equal((await w.B.keys.ackToDeviceMessages({ deviceId: w.b1.id, messageIds: [ids[0]!, ids[2]!] })).deleted, 0, "acknowledging again deletes nothing");
        assert.deepEqual(await listed(), [ids[1]], "and changes nothing");
        assert.equal((await w.B.keys.ackToDeviceMessages({ deviceId: w.b1.id, messageIds: [ids[1]!, ids[0]!] })).deleted, 1);
        assert.deepEqual(await listed(), []);
      });

      it("acknowledges only on the named device: another device's message id deletes nothing", async () => {
        const w = await world(protocol, "ackother");
        const [forB1, forB2] = (await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1), opaque(w.b2)] })).messageIds;
        assert.equal((await w.B.keys.ackToDeviceMessages({ deviceId: w.b1.id, messageIds: [forB2!] })).deleted, 0);
        assert.deepEqual((await inboxOf(w.B, w.b2.id)).map((m) => m.id), [forB2]);
        assert.deepEqual((await inboxOf(w.B, w.b1.id)).map((m) => m.id), [forB1]);
      });

      it("refuses another user's device inbox with PERMISSION_DENIED, listing or acknowledging, and deletes nothing", async () => {
        const w = await world(protocol, "foreign");
        const ids = (await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1)] })).messageIds;
        await expectCode(w.C.keys.listToDeviceMessages({ deviceId: w.b1.id }), Code.PermissionDenied);
        await expectCode(w.A.keys.listToDeviceMessages({ deviceId: w.b1.id }), Code.PermissionDenied);
        await expectCode(w.C.keys.ackToDeviceMessages({ deviceId: w.b1.id, messageIds: ids }), Code.PermissionDenied);
        assert.deepEqual((await inboxOf(w.B, w.b1.id)).map((m) => m.id), ids, "still waiting for Bob's device");
      });

      it("refuses payloads over the limits, naming messages, and sends nothing", async () => {
        const w = await world(protocol, "limits");
        const big = { ...opaque(w.b1), ciphertext: nacl.randomBytes(64 * 1024 + 1) };
        const longNonce = { ...opaque(w.b1), nonce: nacl.randomBytes(65) };
        const longAlgorithm = { ...opaque(w.b1), algorithm: "a".repeat(65) };
        for (const [what, bad] of [["ciphertext over 64 KiB", big], ["nonce over 64 bytes", longNonce], ["algorithm over 64 characters", longAlgorithm]] as const) {
          await expectInvalidArgument(w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [opaque(w.b1), bad] }), "messages").catch((err: Error) =>
            assert.fail(`${what}: ${err.message}`),
          );
        }
        await expectInvalidArgument(w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [] }), "messages");
        const tooMany = Array.from({ length: 1001 }, () => ({ ...opaque(w.b1), ciphertext: new Uint8Array([1]) }));
        await expectInvalidArgument(w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: tooMany }), "messages");
        assert.deepEqual(await inboxOf(w.B, w.b1.id), [], "nothing was sent");
        const exactly = { ...opaque(w.b1), ciphertext: nacl.randomBytes(64 * 1024), nonce: nacl.randomBytes(64), algorithm: "a".repeat(64) };
        await w.A.keys.sendToDevice({ senderDeviceId: w.a1.id, messages: [exactly] });
        assertBytes((await inboxOf(w.B, w.b1.id))[0]?.ciphertext, exactly.ciphertext, "a 64 KiB payload");
      });
    });
  }
});
