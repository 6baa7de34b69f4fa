/**
 * The key directory (KeyService.RegisterDevice, ListDevices): a device is its Ed25519 signing
 * key plus an X25519 box key the signing key signed. The server checks the signature and the
 * key sizes, hands the same device back when its owner registers it again, refuses a signing
 * key another user holds, and lists anyone's devices (public keys are public) with the prekey
 * count shown to the owner only.
 */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import {
  assertBytes,
  e2eClientsFor,
  makePrekeys,
  newDeviceKeys,
  registerDevice,
  registration,
  unclaimedPrekeys,
} from "../helpers/e2e.ts";

describe("KeyService: RegisterDevice and ListDevices", () => {
  let server: TestServer;
  before(async () => {
    server = await startRealtimeServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("registers a device whose box key its signing key signed, and lists it with its public keys", async () => {
        const [ada] = await newUsers(server, 1, "register");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const res = await A.keys.registerDevice(registration(keys, "Ada's laptop"));
        assert.equal(res.created, true, "created");
        const d = res.device!;
        assert.ok(d.deviceId, "the server chose a device id");
        assert.equal(d.userId, ada);
        assertBytes(d.signingPublicKey, keys.signing.publicKey, "signing_public_key");
        assertBytes(d.boxPublicKey, keys.box.publicKey, "box_public_key");
        assertBytes(d.boxKeySignature, keys.boxKeySignature, "box_key_signature");
        assert.equal(d.displayName, "Ada's laptop");
        assert.ok(d.createdAt, "created_at is set");
        assert.ok(Math.abs(timestampMs(d.createdAt) - Date.now()) < 5 * 60_000, "created_at is about now");
        assert.equal(d.unclaimedPrekeys, 0);

        const listed = (await A.keys.listDevices({ userIds: [ada!] })).devices;
        assert.deepEqual(listed.map((x) => x.deviceId), [d.deviceId]);
        const l = listed[0]!;
        assertBytes(l.signingPublicKey, keys.signing.publicKey, "listed signing_public_key");
        assertBytes(l.boxPublicKey, keys.box.publicKey, "listed box_public_key");
        assert.ok(nacl.sign.detached.verify(l.boxPublicKey, l.boxKeySignature, l.signingPublicKey), "the listed signature verifies");
        assert.equal(l.displayName, "Ada's laptop");
      });

      it("refuses a box key signature that does not verify, naming box_key_signature, and registers nothing", async () => {
        const [ada] = await newUsers(server, 1, "badsig");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const stranger = nacl.sign.keyPair();
        const otherBox = nacl.box.keyPair();
        const flipped = Uint8Array.from(keys.boxKeySignature);
        flipped[10]! ^= 0x01;
        const cases: Array<[string, Uint8Array]> = [
          ["signed by another signing key", nacl.sign.detached(keys.box.publicKey, stranger.secretKey)],
          ["a signature of another box key", nacl.sign.detached(otherBox.publicKey, keys.signing.secretKey)],
          ["one bit flipped", flipped],
          ["all zeros", new Uint8Array(64)],
        ];
        for (const [what, boxKeySignature] of cases) {
          await expectInvalidArgument(
            A.keys.registerDevice({ ...registration(keys), boxKeySignature }),
            "box_key_signature",
          ).catch((err: Error) => assert.fail(`${what}: ${err.message}`));
        }
        assert.deepEqual((await A.keys.listDevices({ userIds: [ada!] })).devices, [], "nothing was registered");
      });

      it("refuses keys and signatures of the wrong length, naming the field", async () => {
        const [ada] = await newUsers(server, 1, "lengths");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const base = registration(keys);
        const cases: Array<[string, Record<string, Uint8Array>]> = [
          ["signing_public_key", { signingPublicKey: new Uint8Array(0) }],
          ["signing_public_key", { signingPublicKey: keys.signing.publicKey.slice(0, 31) }],
          ["signing_public_key", { signingPublicKey: Uint8Array.from([...keys.signing.publicKey, 0]) }],
          ["box_public_key", { boxPublicKey: new Uint8Array(0) }],
          ["box_public_key", { boxPublicKey: keys.box.publicKey.slice(0, 31) }],
          ["box_public_key", { boxPublicKey: Uint8Array.from([...keys.box.publicKey, 0]) }],
          ["box_key_signature", { boxKeySignature: new Uint8Array(0) }],
          ["box_key_signature", { boxKeySignature: keys.boxKeySignature.slice(0, 63) }],
          ["box_key_signature", { boxKeySignature: Uint8Array.from([...keys.boxKeySignature, 0]) }],
        ];
        for (const [field, change] of cases) {
          const size = Object.values(change)[0]!.length;
          await expectInvalidArgument(A.keys.registerDevice({ ...base, ...change }), field).catch((err: Error) =>
            assert.fail(`${field} of ${size} bytes: ${err.message}`),
          );
        }
        assert.deepEqual((await A.keys.listDevices({ userIds: [ada!] })).devices, [], "nothing was registered");
      });

      it("returns the same device with created=false when the owner registers its signing key again", async () => {
        const [ada] = await newUsers(server, 1, "again");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const first = await A.keys.registerDevice(registration(keys, "phone"));
        const second = await A.keys.registerDevice(registration(keys, "phone"));
        assert.equal(first.created, true);
        assert.equal(second.created, false, "the second registration created nothing");
        assert.equal(second.device?.deviceId, first.device?.deviceId, "the same device id");
        assertBytes(second.device?.signingPublicKey, keys.signing.publicKey, "signing_public_key");
        assert.deepEqual(second.device?.createdAt, first.device?.createdAt, "the same created_at");
        const listed = (await A.keys.listDevices({ userIds: [ada!] })).devices;
        assert.deepEqual(listed.map((d) => d.deviceId), [first.device!.deviceId], "listed once");
      });

      it("refuses a signing key another user registered with ALREADY_EXISTS", async () => {
        const [ada, bob] = await newUsers(server, 2, "taken");
        const A = e2eClientsFor(server, ada!, protocol);
        const B = e2eClientsFor(server, bob!, protocol);
        const keys = newDeviceKeys();
        const ours = (await A.keys.registerDevice(registration(keys, "ada's"))).device!;
        await expectCode(B.keys.registerDevice(registration(keys, "bob's")), Code.AlreadyExists);
        const listed = (await B.keys.listDevices({ userIds: [ada!, bob!] })).devices;
        assert.deepEqual(listed.map((d) => [d.userId, d.deviceId, d.displayName]), [[ada, ours.deviceId, "ada's"]], "Ada's device is untouched and Bob has none");
      });

      it("counts the prekeys uploaded with the registration", async () => {
        const [ada] = await newUsers(server, 1, "withkeys");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const res = await A.keys.registerDevice(registration(keys, "tablet", makePrekeys(keys, 7)));
        assert.equal(res.device?.unclaimedPrekeys, 7, "in the response");
        assert.equal(await unclaimedPrekeys(A, ada!, res.device!.deviceId), 7, "in the owner's listing");
      });

      it("refuses a registration whose prekey the device did not sign, naming prekeys, and registers nothing", async () => {
        const [ada] = await newUsers(server, 1, "badprekey");
        const A = e2eClientsFor(server, ada!, protocol);
        const keys = newDeviceKeys();
        const prekeys = makePrekeys(keys, 3);
        prekeys[1] = { ...prekeys[1]!, signature: nacl.sign.detached(prekeys[1]!.publicKey, nacl.sign.keyPair().secretKey) };
        await expectInvalidArgument(A.keys.registerDevice(registration(keys, "x", prekeys)), "prekeys");
        assert.deepEqual((await A.keys.listDevices({ userIds: [ada!] })).devices, [], "nothing was registered");
      });

      it("takes a display name of 64 characters and refuses 65, naming display_name", async () => {
        const [ada] = await newUsers(server, 1, "name");
        const A = e2eClientsFor(server, ada!, protocol);
        await expectInvalidArgument(A.keys.registerDevice(registration(newDeviceKeys(), "n".repeat(65))), "display_name");
        const ok = await A.keys.registerDevice(registration(newDeviceKeys(), "n".repeat(64)));
        assert.equal(ok.device?.displayName, "n".repeat(64));
      });

      it("takes 100 prekeys with a registration and refuses 101, naming prekeys", async () => {
        const [ada] = await newUsers(server, 1, "many");
        const A = e2eClientsFor(server, ada!, protocol);
        const tooMany = newDeviceKeys();
        await expectInvalidArgument(A.keys.registerDevice(registration(tooMany, "x", makePrekeys(tooMany, 101))), "prekeys");
        const enough = newDeviceKeys();
        const ok = await A.keys.registerDevice(registration(enough, "x", makePrekeys(enough, 100)));
        assert.equal(ok.device?.unclaimedPrekeys, 100);
      });

      it("lists several users' devices grouped by user in request order, oldest device first", async () => {
        const [ada, bob, cy, viewer] = await newUsers(server, 4, "several");
        const as = (u: string) => e2eClientsFor(server, u, protocol);
        const ada1 = await registerDevice(as(ada!), 0, "ada 1");
        const bob1 = await registerDevice(as(bob!), 0, "bob 1");
        const ada2 = await registerDevice(as(ada!), 0, "ada 2");
        const cy1 = await registerDevice(as(cy!), 0, "cy 1");
        const bob2 = await registerDevice(as(bob!), 0, "bob 2");
        const listed = (await as(viewer!).keys.listDevices({ userIds: [bob!, cy!, ada!] })).devices;
        assert.deepEqual(
          listed.map((d) => [d.userId, d.deviceId]),
          [[bob, bob1.id], [bob, bob2.id], [cy, cy1.id], [ada, ada1.id], [ada, ada2.id]],
        );
      });

      it("leaves revoked devices out of the listing", async () => {
        const [ada, viewer] = await newUsers(server, 2, "revoked");
        const A = e2eClientsFor(server, ada!, protocol);
        const kept = await registerDevice(A, 0, "kept");
        const gone = await registerDevice(A, 0, "gone");
        await A.keys.revokeDevice({ deviceId: gone.id });
        for (const [who, clients] of [["owner", A], ["viewer", e2eClientsFor(server, viewer!, protocol)]] as const) {
          const listed = (await clients.keys.listDevices({ userIds: [ada!] })).devices;
          assert.deepEqual(listed.map((d) => d.deviceId), [kept.id], `${who} sees the kept device only`);
        }
      });

      it("lists revoked devices too, with when they were revoked, when asked", async () => {
        const [ada, viewer] = await newUsers(server, 2, "withrevoked");
        const A = e2eClientsFor(server, ada!, protocol);
        const kept = await registerDevice(A, 0, "kept");
        const gone = await registerDevice(A, 0, "gone");
        const before = Date.now();
        await A.keys.revokeDevice({ deviceId: gone.id });
        const listed = (await e2eClientsFor(server, viewer!, protocol).keys.listDevices({ userIds: [ada!], includeRevoked: true })).devices;
        assert.deepEqual(listed.map((d) => d.deviceId), [kept.id, gone.id], "both, oldest first");
        assert.equal(listed[0]!.revokedAt, undefined, "the kept device is not revoked");
        assert.ok(listed[1]!.revokedAt && Number(listed[1]!.revokedAt.seconds) * 1000 >= before - 2000, "the revoked one says when");
      });

      it("shows another user's devices with their keys but unclaimed_prekeys 0, and the owner the real count", async () => {
        const [ada, stranger] = await newUsers(server, 2, "count");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 5, "counted");
        const seen = (await e2eClientsFor(server, stranger!, protocol).keys.listDevices({ userIds: [ada!] })).devices;
        assert.equal(seen.length, 1, "a user who shares nothing with Ada still sees her device");
        assertBytes(seen[0]!.signingPublicKey, dev.keys.signing.publicKey, "signing_public_key");
        assert.equal(seen[0]!.unclaimedPrekeys, 0, "another user sees 0");
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 5, "the owner sees 5");
      });

      it("refuses an empty user list and more than 500 users, naming user_ids", async () => {
        const [ada] = await newUsers(server, 1, "ulist");
        const A = e2eClientsFor(server, ada!, protocol);
        await expectInvalidArgument(A.keys.listDevices({ userIds: [] }), "user_ids");
        const many = Array.from({ length: 501 }, (_, i) => `nobody-${i}`);
        await expectInvalidArgument(A.keys.listDevices({ userIds: many }), "user_ids");
      });
    });
  }

  it("allows at most 20 devices per user, then RESOURCE_EXHAUSTED", async () => {
    const [ada] = await newUsers(server, 1, "limit");
    const A = e2eClientsFor(server, ada!, "connect");
    for (let i = 0; i < 20; i++) await registerDevice(A, 0, `device ${i}`);
    await expectCode(A.keys.registerDevice(registration(newDeviceKeys(), "one too many")), Code.ResourceExhausted);
    assert.equal((await A.keys.listDevices({ userIds: [ada!] })).devices.length, 20);
  });
});
