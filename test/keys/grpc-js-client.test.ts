/**
 * KeyService from an independent client: @grpc/grpc-js with the contract loaded at run time
 * from proto/ (no generated code shared with the server), as a team holding only the .proto
 * files would call it. Keys and payloads are Buffers on this side, so this also shows the
 * bytes fields survive another protobuf implementation unchanged.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { call, expectStatus, loadServices, type ServiceClient } from "../helpers/grpc-js.ts";
import nacl from "tweetnacl";
import { newUsers, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { newDeviceKeys, makePrekeys } from "../helpers/e2e.ts";

const services = loadServices<"KeyService">(["parley/v1/key_service.proto"]);

describe("KeyService from an independent @grpc/grpc-js client", () => {
  let server: TestServer;
  let keys: ServiceClient;
  before(async () => {
    server = await startRealtimeServer();
    keys = new services.KeyService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    keys?.close();
    await server?.stop();
  });

  async function auth(userId: string): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${await server.tokenFor(userId)}`);
    return md;
  }

  it("registers devices, claims a prekey and relays a sealed payload that opens on the other side", async () => {
    const [ada, bob, cy] = (await newUsers(server, 3, "grpcjs")) as [string, string, string];
    await createGroup(server.clientsFor(ada), [bob, cy]);
    const mdA = await auth(ada);
    const mdB = await auth(bob);

    const adaKeys = newDeviceKeys();
    const bobKeys = newDeviceKeys();
    const wire = (p: { keyId: number; publicKey: Uint8Array; signature: Uint8Array }) => ({
      key_id: p.keyId,
      public_key: Buffer.from(p.publicKey),
      signature: Buffer.from(p.signature),
    });
    const register = (k: typeof adaKeys, name: string, prekeys: ReturnType<typeof wire>[], md: grpc.Metadata) =>
      call(keys, "RegisterDevice", {
        signing_public_key: Buffer.from(k.signing.publicKey),
        box_public_key: Buffer.from(k.box.publicKey),
        box_key_signature: Buffer.from(k.boxKeySignature),
        display_name: name,
        prekeys,
      }, md);
    const a1 = (await register(adaKeys, "ada via grpc-js", [], mdA)).device;
    const regB = await register(bobKeys, "bob via grpc-js", makePrekeys(bobKeys, 2).map(wire), mdB);
    assert.equal(regB.created, true);
    const b1 = regB.device;
    assert.equal(b1.unclaimed_prekeys, 2);
    assert.ok(Buffer.from(bobKeys.signing.publicKey).equals(b1.signing_public_key), "signing_public_key round-trips");

    const listed = await call(keys, "ListDevices", { user_ids: [bob, ada] }, mdA);
    assert.deepEqual(listed.devices.map((d: any) => d.device_id), [b1.device_id, a1.device_id]);
    const bobListed = listed.devices[0];
    assert.ok(nacl.sign.detached.verify(bobListed.box_public_key, bobListed.box_key_signature, bobListed.signing_public_key), "the directory entry verifies");
    assert.equal(bobListed.unclaimed_prekeys, 0, "Ada does not see Bob's count");

    const claimed = (await call(keys, "ClaimPrekeys", { device_ids: [b1.device_id] }, mdA)).claimed[0];
    assert.equal(claimed.device_id, b1.device_id);
    assert.ok(claimed.prekey, "a prekey was handed out");
    assert.ok(nacl.sign.detached.verify(claimed.prekey.public_key, claimed.prekey.signature, bobListed.signing_public_key), "signed by Bob's device");

    const nonce = nacl.randomBytes(nacl.box.nonceLength);
    const ciphertext = nacl.box(new TextEncoder().encode("sender key for you"), nonce, claimed.prekey.public_key, adaKeys.box.secretKey);
    const sent = await call(keys, "SendToDevice", {
      sender_device_id: a1.device_id,
      messages: [{ recipient_device_id: b1.device_id, ciphertext: Buffer.from(ciphertext), nonce: Buffer.from(nonce), algorithm: "x25519-xsalsa20-poly1305", prekey_id: claimed.prekey.key_id }],
    }, mdA);
    assert.equal(sent.message_ids.length, 1);

    const inbox = await call(keys, "ListToDeviceMessages", { device_id: b1.device_id, page_size: 10 }, mdB);
    assert.equal(inbox.messages.length, 1);
    const m = inbox.messages[0];
    assert.equal(m.id, sent.message_ids[0]);
    assert.equal(m.sender_user_id, ada);
    assert.equal(m.sender_device_id, a1.device_id);
    assert.equal(m.prekey_id, claimed.prekey.key_id);
    const secret = bobKeys.prekeySecrets.get(m.prekey_id);
    assert.ok(secret, "Bob holds the prekey's secret");
    const opened = nacl.box.open(m.ciphertext, m.nonce, adaKeys.box.publicKey, secret);
    assert.ok(opened, "the payload opens with the prekey secret");
    assert.equal(new TextDecoder().decode(opened), "sender key for you");

    const acked = await call(keys, "AckToDeviceMessages", { device_id: b1.device_id, message_ids: [m.id] }, mdB);
    assert.equal(acked.deleted, 1);
    assert.equal((await call(keys, "ListToDeviceMessages", { device_id: b1.device_id }, mdB)).messages.length, 0);
  });

  it("gets the contract's status codes: a bad signature, another user's device", async () => {
    const [ada, mallory] = (await newUsers(server, 2, "grpcjscodes")) as [string, string];
    const k = newDeviceKeys();
    const base = {
      signing_public_key: Buffer.from(k.signing.publicKey),
      box_public_key: Buffer.from(k.box.publicKey),
      display_name: "x",
    };
    await expectStatus(call(keys, "RegisterDevice", { ...base, box_key_signature: Buffer.alloc(64) }, await auth(ada)), grpc.status.INVALID_ARGUMENT);
    const dev = (await call(keys, "RegisterDevice", { ...base, box_key_signature: Buffer.from(k.boxKeySignature) }, await auth(ada))).device;
    await expectStatus(call(keys, "RegisterDevice", { ...base, box_key_signature: Buffer.from(k.boxKeySignature) }, await auth(mallory)), grpc.status.ALREADY_EXISTS);
    await expectStatus(
      call(keys, "UploadPrekeys", { device_id: dev.device_id, prekeys: makePrekeys(k, 1).map((p) => ({ key_id: p.keyId, public_key: Buffer.from(p.publicKey), signature: Buffer.from(p.signature) })) }, await auth(mallory)),
      grpc.status.PERMISSION_DENIED,
    );
  });
});
