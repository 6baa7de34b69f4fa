/** Device keys and prekeys: what the directory checks, and what a device stores. */
import assert from "node:assert/strict";
import {
  createDeviceKeys,
  createPrekey,
  deserializeDeviceKeys,
  serializeDeviceKeys,
  verifyDeviceBoxKey,
  verifyPrekey,
} from "../../src/client/crypto/index.ts";
import { flipBit } from "./helpers.ts";

describe("device keys", () => {
  it("signs the box key so the directory entry verifies", async () => {
    const keys = createDeviceKeys();
    assert.ok(await verifyDeviceBoxKey({ signingPublicKey: keys.signing.publicKey, boxPublicKey: keys.box.publicKey, boxKeySignature: keys.boxKeySignature }));
  });

  it("rejects a box key swapped in, a flipped signature and another device's signing key", async () => {
    const keys = createDeviceKeys();
    const other = createDeviceKeys();
    const entry = { signingPublicKey: keys.signing.publicKey, boxPublicKey: keys.box.publicKey, boxKeySignature: keys.boxKeySignature };
    assert.equal(await verifyDeviceBoxKey({ ...entry, boxPublicKey: other.box.publicKey }), false);
    assert.equal(await verifyDeviceBoxKey({ ...entry, boxKeySignature: flipBit(entry.boxKeySignature, 0) }), false);
    assert.equal(await verifyDeviceBoxKey({ ...entry, signingPublicKey: other.signing.publicKey }), false);
    assert.equal(await verifyDeviceBoxKey({ ...entry, boxKeySignature: entry.boxKeySignature.slice(1) }), false);
  });

  it("comes back identical from its stored form", async () => {
    const keys = createDeviceKeys();
    const restored = deserializeDeviceKeys(serializeDeviceKeys(keys));
    assert.deepEqual(restored.signing.publicKey, keys.signing.publicKey);
    assert.deepEqual(restored.box.publicKey, keys.box.publicKey);
    assert.deepEqual(restored.boxKeySignature, keys.boxKeySignature);
    assert.throws(() => deserializeDeviceKeys(new Uint8Array(10)));
  });

  it("refuses a stored signing key whose public half does not derive from its seed", () => {
    const stored = serializeDeviceKeys(createDeviceKeys());
    // Bytes 32..63 are the Ed25519 public key tweetnacl keeps after the seed.
    assert.throws(() => deserializeDeviceKeys(flipBit(stored, 40)), /does not match its seed/);
  });
});

describe("prekeys", () => {
  it("carry the device's id and a signature only that device's key verifies", async () => {
    const keys = createDeviceKeys();
    const prekey = await createPrekey(7, keys.signing.secretKey);
    assert.equal(prekey.keyId, 7);
    assert.ok(await verifyPrekey(prekey, keys.signing.publicKey));
    assert.equal(await verifyPrekey(prekey, createDeviceKeys().signing.publicKey), false);
    assert.equal(await verifyPrekey({ ...prekey, publicKey: flipBit(prekey.publicKey, 3) }, keys.signing.publicKey), false);
    assert.equal(await verifyPrekey({ ...prekey, signature: flipBit(prekey.signature, -1) }, keys.signing.publicKey), false);
  });
});
