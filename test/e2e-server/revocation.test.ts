/**
 * KeyService.RevokeDevice and the device_changed events: a revoked device leaves the directory
 * and its inbox is emptied; every encrypted conversation of its owner moves to the next key
 * epoch (plain ones stay at 0), and device_changed goes into each of them, carrying the new
 * epoch, and to the owner (epoch 0 in that copy). Revoking twice changes nothing; another
 * user's device cannot be revoked. Registering a device is announced the same way, without
 * moving the epoch.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { useRealtimeServer } from "../helpers/realtime.ts";
import { expectOneOfCodes } from "../helpers/expect.ts";
import { createDirect, createGroup } from "../helpers/fixtures.ts";
import type { Feed } from "../helpers/feed.ts";
import { createEncrypted, e2eClientsFor, inboxOf, keyEpochOf, listedDevice, registerDevice } from "../helpers/e2e.ts";
import nacl from "tweetnacl";

/** The device_changed payload of an event about this device, if it is one. */
function deviceChanged(deviceId: string, revoked: boolean) {
  return (e: Event) =>
    e.kind.case === "deviceChanged" && e.kind.value.deviceId === deviceId && e.kind.value.revoked === revoked ? e.kind.value : undefined;
}

describe("KeyService: RevokeDevice", () => {
  const fixture = useRealtimeServer();
  const live = fixture.live;
  let server: TestServer;
  before(() => {
    server = fixture.server;
  });

  /** Waits for the device_changed event about the device in the conversation ("" for the owner's own copy). */
  async function waitDeviceChanged(feed: Feed, deviceId: string, revoked: boolean, conversationId: string | null, what: string) {
    const { value } = await feed.waitFor((f) => {
      if (f.case !== "event") return undefined;
      if (conversationId !== null && f.value.conversationId !== conversationId) return undefined;
      const dc = deviceChanged(deviceId, revoked)(f.value);
      return dc ? { event: f.value, dc } : undefined;
    }, what);
    return value;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("takes the device out of the directory and leaves the owner's other devices", async () => {
        const [bob, viewer] = await newUsers(server, 2, "gone");
        const B = e2eClientsFor(server, bob!, protocol);
        const kept = await registerDevice(B, 0, "kept");
        const gone = await registerDevice(B, 0, "gone");
        await B.keys.revokeDevice({ deviceId: gone.id });
        for (const clients of [B, e2eClientsFor(server, viewer!, protocol)]) {
          const listed = (await clients.keys.listDevices({ userIds: [bob!] })).devices.map((d) => d.deviceId);
          assert.deepEqual(listed, [kept.id]);
        }
      });

      it("empties the revoked device's inbox and leaves the owner's other inboxes", async () => {
        const [ada, bob, cy] = await newUsers(server, 3, "inbox");
        const A = e2eClientsFor(server, ada!, protocol);
        const B = e2eClientsFor(server, bob!, protocol);
        await createGroup(A, [bob!, cy!]);
        const a1 = await registerDevice(A);
        const b1 = await registerDevice(B), b2 = await registerDevice(B);
        const payload = (to: string) => ({ recipientDeviceId: to, ciphertext: nacl.randomBytes(40), nonce: nacl.randomBytes(24), algorithm: "x", prekeyId: 0 });
        await A.keys.sendToDevice({ senderDeviceId: a1.id, messages: [payload(b1.id), payload(b2.id), payload(b2.id)] });
        assert.equal((await inboxOf(B, b2.id)).length, 2);
        await B.keys.revokeDevice({ deviceId: b2.id });
        // The contract does not say whether a revoked device's inbox can still be listed; if it
        // can, it is empty.
        try {
          assert.deepEqual(await inboxOf(B, b2.id), [], "the revoked device's inbox is empty");
        } catch (err) {
          if (err instanceof assert.AssertionError) throw err;
          await expectOneOfCodes(Promise.reject(err), [Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition]);
        }
        assert.equal((await inboxOf(B, b1.id)).length, 1, "the other device's inbox is untouched");
      });

      it("moves every encrypted conversation of the owner to the next key epoch, and no other conversation", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "epochs")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const direct = await createEncrypted(A, ConversationType.DIRECT, [bob]);
        const group = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        await A.conversations.removeMember({ conversationId: group.id, userId: dan }); // group at epoch 2
        const plainGroup = await createGroup(A, [bob, cy]);
        const plainDirect = await createDirect(A, bob);
        const without = await createEncrypted(A, ConversationType.GROUP, [cy, dan]);
        const before = {
          direct: await keyEpochOf(A, direct.id),
          group: await keyEpochOf(A, group.id),
          without: await keyEpochOf(A, without.id),
        };
        assert.deepEqual(before, { direct: 1, group: 2, without: 1 }, "the epochs before");

        const b1 = await registerDevice(B);
        await registerDevice(B);
        await B.keys.revokeDevice({ deviceId: b1.id });

        for (const [who, clients] of [["ada", A], ["bob", B]] as const) {
          assert.equal(await keyEpochOf(clients, direct.id), 2, `${who}: the encrypted DIRECT moved on by one`);
          assert.equal(await keyEpochOf(clients, group.id), 3, `${who}: the encrypted GROUP moved on by one`);
          assert.equal(await keyEpochOf(clients, plainGroup.id), 0, `${who}: a plain group stays at 0`);
          assert.equal(await keyEpochOf(clients, plainDirect.id), 0, `${who}: a plain DIRECT stays at 0`);
        }
        assert.equal(await keyEpochOf(A, without.id), 1, "an encrypted conversation without bob keeps its epoch");
      });

      it("sends device_changed with the new epoch into each encrypted conversation of the owner, and to the owner", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "events")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const direct = await createEncrypted(A, ConversationType.DIRECT, [bob]);
        const group = await createEncrypted(B, ConversationType.GROUP, [ada, cy]);
        const b1 = await registerDevice(B);
        const feed = { ada: await live(ada, protocol, "ada"), bob: await live(bob, protocol, "bob"), cy: await live(cy, protocol, "cy") };

        await B.keys.revokeDevice({ deviceId: b1.id });

        for (const [who, f, conv] of [["ada", feed.ada, direct], ["ada", feed.ada, group], ["cy", feed.cy, group]] as const) {
          const what = `${who}: device_changed(revoked) in ${conv === direct ? "the DIRECT" : "the group"}`;
          const { event, dc } = await waitDeviceChanged(f, b1.id, true, conv.id, what);
          assert.equal(dc.userId, bob, `${what}: user_id`);
          assert.equal(dc.keyEpoch, 2, `${what}: the epoch after the revocation`);
          assert.ok(event.id && event.cursor, `${what}: a stored event`);
        }
        const own = await feed.bob.waitFor(
          (fr) => (fr.case === "event" && deviceChanged(b1.id, true)(fr.value)?.keyEpoch === 0 ? fr.value : undefined),
          "bob: his own copy of device_changed(revoked), epoch 0",
        );
        const ownDc = own.value.kind.case === "deviceChanged" ? own.value.kind.value : undefined;
        assert.equal(ownDc?.userId, bob);
      });

      it("announces a newly registered device in the owner's encrypted conversations without moving the epoch", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "register")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const group = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const feed = { ada: await live(ada, protocol, "ada"), bob: await live(bob, protocol, "bob") };
        const b1 = await registerDevice(B);
        const { dc } = await waitDeviceChanged(feed.ada, b1.id, false, group.id, "ada: device_changed(registered) in the group");
        assert.equal(dc.userId, bob);
        assert.equal(dc.keyEpoch, 1, "the epoch is unchanged");
        await waitDeviceChanged(feed.bob, b1.id, false, null, "bob: device_changed(registered)");
        assert.equal(await keyEpochOf(A, group.id), 1, "registering does not move the epoch");
      });

      it("changes nothing when a revoked device is revoked again", async () => {
        const [ada, bob] = (await newUsers(server, 2, "twice")) as [string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const direct = await createEncrypted(A, ConversationType.DIRECT, [bob]);
        const b1 = await registerDevice(B);
        await B.keys.revokeDevice({ deviceId: b1.id });
        assert.equal(await keyEpochOf(A, direct.id), 2);
        await B.keys.revokeDevice({ deviceId: b1.id });
        assert.equal(await keyEpochOf(A, direct.id), 2, "the epoch did not move again");
        assert.equal(await listedDevice(A, bob, b1.id), undefined, "still not listed");
      });

      it("refuses to revoke another user's device and changes nothing", async () => {
        const [ada, bob] = (await newUsers(server, 2, "notyours")) as [string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const direct = await createEncrypted(A, ConversationType.DIRECT, [bob]);
        const b1 = await registerDevice(B);
        // The contract says "one of the caller's devices" without naming the code.
        await expectOneOfCodes(A.keys.revokeDevice({ deviceId: b1.id }), [Code.PermissionDenied, Code.NotFound]);
        assert.ok(await listedDevice(A, bob, b1.id), "bob's device is still listed");
        assert.equal(await keyEpochOf(A, direct.id), 1, "the epoch did not move");
      });
    });
  }
});
