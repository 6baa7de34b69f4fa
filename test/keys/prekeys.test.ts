/**
 * One-time prekeys (KeyService.UploadPrekeys, ClaimPrekeys): each is signed by its device,
 * a key id or key a device ever uploaded is never taken again (and a call carrying one stores
 * nothing), and each prekey is handed out once, to one claimer, even when many claim at once.
 */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { Code } from "@connectrpc/connect";
import type { ClaimPrekeysResponse } from "../../gen/parley/v1/key_service_pb.ts";
import type { Prekey } from "../../gen/parley/v1/device_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectCode, expectInvalidArgument, expectOneOfCodes } from "../helpers/expect.ts";
import { createGroup } from "../helpers/fixtures.ts";
import {
  assertBytes,
  e2eClientsFor,
  makePrekeys,
  registerDevice,
  unclaimedPrekeys,
  type PrekeyInit,
  type RegisteredDevice,
} from "../helpers/e2e.ts";

/** "keyId:publicKeyHex", to compare prekeys handed out with those uploaded. */
function prekeyName(p: Pick<Prekey, "keyId" | "publicKey">): string {
  return `${p.keyId}:${Buffer.from(p.publicKey).toString("hex")}`;
}

/** Asserts a claimed prekey is one the device uploaded, signature and all, and that it verifies. */
function assertUploaded(claimed: Prekey | undefined, device: RegisteredDevice, uploaded: readonly PrekeyInit[], what: string): void {
  assert.ok(claimed, `${what}: a prekey was handed out`);
  const original = uploaded.find((p) => p.keyId === claimed.keyId);
  assert.ok(original, `${what}: key id ${claimed.keyId} is one the device uploaded`);
  assertBytes(claimed.publicKey, original.publicKey, `${what}: public_key`);
  assertBytes(claimed.signature, original.signature, `${what}: signature`);
  assert.ok(nacl.sign.detached.verify(claimed.publicKey, claimed.signature, device.keys.signing.publicKey), `${what}: the signature verifies`);
}

describe("KeyService: UploadPrekeys and ClaimPrekeys", () => {
  let server: TestServer;
  before(async () => {
    server = await startRealtimeServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("adds signed prekeys to the caller's device and answers how many are left, these included", async () => {
        const [ada] = await newUsers(server, 1, "upload");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 3);
        const res = await A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: makePrekeys(dev.keys, 4) });
        assert.equal(res.unclaimedPrekeys, 7);
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 7);
      });

      it("refuses a prekey the device did not sign, naming prekeys, and stores none of the call", async () => {
        const [ada] = await newUsers(server, 1, "unsigned");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 2);
        const other = await registerDevice(A, 0);
        const cases: Array<[string, (p: PrekeyInit) => PrekeyInit]> = [
          ["signed by another device of the same user", (p) => ({ ...p, signature: nacl.sign.detached(p.publicKey, other.keys.signing.secretKey) })],
          ["a signature of another key", (p) => ({ ...p, signature: nacl.sign.detached(nacl.box.keyPair().publicKey, dev.keys.signing.secretKey) })],
          ["a zero signature", (p) => ({ ...p, signature: new Uint8Array(64) })],
          ["a short signature", (p) => ({ ...p, signature: p.signature.slice(0, 63) })],
          ["a short public key", (p) => ({ ...p, publicKey: p.publicKey.slice(0, 31) })],
        ];
        for (const [what, spoil] of cases) {
          const batch = makePrekeys(dev.keys, 3);
          batch[2] = spoil(batch[2]!);
          await expectInvalidArgument(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: batch }), "prekeys").catch((err: Error) =>
            assert.fail(`${what}: ${err.message}`),
          );
          assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 2, `${what}: nothing of the call was stored`);
        }
      });

      it("refuses a key id the device ever uploaded with ALREADY_EXISTS and stores none of the call", async () => {
        const [ada, claimer] = await newUsers(server, 2, "reuseid");
        const A = e2eClientsFor(server, ada!, protocol);
        const C = e2eClientsFor(server, claimer!, protocol);
        await createGroup(A, [claimer!, (await newUsers(server, 1, "third"))[0]!]);
        const dev = await registerDevice(A, 2);
        // Key id 1 is still unclaimed; claim key id 2 (or 1) so that a claimed id is tried too.
        const claimed = (await C.keys.claimPrekeys({ deviceIds: [dev.id] })).claimed[0]!.prekey!;
        for (const reusedId of [1, 2]) {
          const batch = makePrekeys(dev.keys, 3);
          const fresh = nacl.box.keyPair();
          batch[1] = { keyId: reusedId, publicKey: fresh.publicKey, signature: nacl.sign.detached(fresh.publicKey, dev.keys.signing.secretKey) };
          await expectCode(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: batch }), Code.AlreadyExists);
          assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 1, `key id ${reusedId} (claimed: ${claimed.keyId === reusedId}): nothing stored`);
        }
      });

      it("refuses a public key the device ever uploaded, under a new id, with ALREADY_EXISTS and stores none of the call", async () => {
        const [ada] = await newUsers(server, 1, "reusekey");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 0);
        const first = makePrekeys(dev.keys, 2);
        await A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: first });
        const batch = makePrekeys(dev.keys, 3);
        batch[0] = { keyId: dev.keys.nextPrekeyId++, publicKey: first[1]!.publicKey, signature: first[1]!.signature };
        await expectCode(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: batch }), Code.AlreadyExists);
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 2, "nothing of the call was stored");
      });

      it("refuses the same key id twice in one call and stores none of it", async () => {
        const [ada] = await newUsers(server, 1, "dupcall");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 1);
        const batch = makePrekeys(dev.keys, 3);
        batch[2] = { ...makePrekeys(dev.keys, 1)[0]!, keyId: batch[0]!.keyId };
        // The contract does not say which of the two codes; both leave everything as it was.
        await expectOneOfCodes(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: batch }), [Code.AlreadyExists, Code.InvalidArgument]);
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 1, "nothing of the call was stored");
      });

      it("refuses uploads to another user's device with PERMISSION_DENIED", async () => {
        const [ada, mallory] = await newUsers(server, 2, "foreign");
        const A = e2eClientsFor(server, ada!, protocol);
        const M = e2eClientsFor(server, mallory!, protocol);
        const dev = await registerDevice(A, 1);
        // Even prekeys Ada's device really signed (replayed from elsewhere) are refused.
        await expectCode(M.keys.uploadPrekeys({ deviceId: dev.id, prekeys: makePrekeys(dev.keys, 2) }), Code.PermissionDenied);
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 1, "nothing was stored");
      });

      it("refuses an upload of no prekeys or of more than 100, naming prekeys", async () => {
        const [ada] = await newUsers(server, 1, "upcount");
        const A = e2eClientsFor(server, ada!, protocol);
        const dev = await registerDevice(A, 0);
        await expectInvalidArgument(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: [] }), "prekeys");
        await expectInvalidArgument(A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: makePrekeys(dev.keys, 101) }), "prekeys");
        assert.equal((await A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: makePrekeys(dev.keys, 100) })).unclaimedPrekeys, 100);
      });

      it("hands each prekey out once, then answers without one", async () => {
        const [ada, bob, cy] = await newUsers(server, 3, "once");
        const A = e2eClientsFor(server, ada!, protocol);
        await createGroup(A, [bob!, cy!]);
        const dev = await registerDevice(A, 0);
        const uploaded = makePrekeys(dev.keys, 3);
        await A.keys.uploadPrekeys({ deviceId: dev.id, prekeys: uploaded });
        const seen = new Set<string>();
        for (const [i, claimer] of [bob!, cy!, bob!].entries()) {
          const res = await e2eClientsFor(server, claimer, protocol).keys.claimPrekeys({ deviceIds: [dev.id] });
          assert.equal(res.claimed.length, 1);
          assert.equal(res.claimed[0]!.deviceId, dev.id);
          assertUploaded(res.claimed[0]!.prekey, dev, uploaded, `claim ${i + 1}`);
          const name = prekeyName(res.claimed[0]!.prekey!);
          assert.ok(!seen.has(name), `claim ${i + 1}: prekey ${name} was handed out before`);
          seen.add(name);
          assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 2 - i, `after claim ${i + 1}, the claimed prekey is no longer counted as unclaimed`);
        }
        const empty = await e2eClientsFor(server, cy!, protocol).keys.claimPrekeys({ deviceIds: [dev.id] });
        assert.equal(empty.claimed.length, 1, "one entry even when none is left");
        assert.equal(empty.claimed[0]!.deviceId, dev.id);
        assert.equal(empty.claimed[0]!.prekey, undefined, "no prekey left: the entry has none");
        assert.equal(await unclaimedPrekeys(A, ada!, dev.id), 0);
      });

      it("claims one prekey of each named device, one entry per device in request order", async () => {
        const [ada, bob, claimer] = await newUsers(server, 3, "multi");
        const A = e2eClientsFor(server, ada!, protocol);
        const B = e2eClientsFor(server, bob!, protocol);
        await createGroup(A, [bob!, claimer!]);
        const a1 = await registerDevice(A, 2);
        const empty = await registerDevice(A, 0);
        const b1 = await registerDevice(B, 1);
        const order = [b1, empty, a1];
        const res = await e2eClientsFor(server, claimer!, protocol).keys.claimPrekeys({ deviceIds: order.map((d) => d.id) });
        assert.deepEqual(res.claimed.map((c) => c.deviceId), order.map((d) => d.id), "request order");
        assert.ok(res.claimed[0]!.prekey, "bob's device had one");
        assert.ok(nacl.sign.detached.verify(res.claimed[0]!.prekey.publicKey, res.claimed[0]!.prekey.signature, b1.keys.signing.publicKey), "signed by bob's device");
        assert.equal(res.claimed[1]!.prekey, undefined, "the device without prekeys answers without one");
        assert.ok(res.claimed[2]!.prekey, "ada's device had two");
        assert.ok(nacl.sign.detached.verify(res.claimed[2]!.prekey.publicKey, res.claimed[2]!.prekey.signature, a1.keys.signing.publicKey), "signed by ada's device");
        assert.equal(await unclaimedPrekeys(A, ada!, a1.id), 1);
        assert.equal(await unclaimedPrekeys(B, bob!, b1.id), 0);
      });

      it("refuses a claim naming no device, naming device_ids", async () => {
        const [ada] = await newUsers(server, 1, "noclaim");
        await expectInvalidArgument(e2eClientsFor(server, ada!, protocol).keys.claimPrekeys({ deviceIds: [] }), "device_ids");
      });
    });
  }

  it("hands each prekey to exactly one of many concurrent claimers", async function () {
    this.timeout(60_000);
    const [owner, ...claimers] = await newUsers(server, 21, "race");
    const O = e2eClientsFor(server, owner!, "connect");
    // The claimers share a conversation with the owner, as real ones do.
    await createGroup(O, claimers);
    const dev = await registerDevice(O, 0);
    const uploaded = makePrekeys(dev.keys, 10);
    await O.keys.uploadPrekeys({ deviceId: dev.id, prekeys: uploaded });

    const protocols: Protocol[] = ["grpc", "connect"];
    const clients = claimers.map((c, i) => e2eClientsFor(server, c, protocols[i % 2]!));
    // Warm the connections so the claims themselves start together.
    await Promise.all(clients.map((c) => c.keys.listDevices({ userIds: [owner!] })));
    const results: ClaimPrekeysResponse[] = await Promise.all(clients.map((c) => c.keys.claimPrekeys({ deviceIds: [dev.id] })));

    const handedOut = results.map((r) => r.claimed[0]?.prekey).filter((p): p is Prekey => p !== undefined);
    for (const r of results) {
      assert.equal(r.claimed.length, 1, "one entry per claim");
      assert.equal(r.claimed[0]!.deviceId, dev.id);
    }
    assert.equal(handedOut.length, 10, `exactly 10 of 20 claimers got a prekey (got ${handedOut.length})`);
    const names = handedOut.map(prekeyName);
    assert.equal(new Set(names).size, 10, `the 10 handed out are distinct: ${names.join(", ")}`);
    assert.deepEqual([...names].sort(), uploaded.map(prekeyName).sort(), "they are exactly the 10 uploaded");
    handedOut.forEach((p, i) => assertUploaded(p, dev, uploaded, `handed-out prekey ${i + 1}`));
    assert.equal(await unclaimedPrekeys(O, owner!, dev.id), 0, "none is left unclaimed");
    const after = await clients[0]!.keys.claimPrekeys({ deviceIds: [dev.id] });
    assert.equal(after.claimed[0]!.prekey, undefined, "a later claim gets none");
  });
});
