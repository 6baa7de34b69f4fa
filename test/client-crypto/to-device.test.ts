/** To-device sealing: to a claimed prekey or, when none is left, to the box key. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ToDevicePayloadSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { TO_DEVICE_ALGORITHM, createDeviceKeys, createPrekey, openToDevice, sealToDevice } from "../../src/client/crypto/index.ts";
import { assertDecryptError, flipBit } from "./helpers.ts";

const payload = create(ToDevicePayloadSchema, {
  kind: { case: "keyRequest", value: { conversationId: "c1", senderKeyId: "k1", seq: 0n } },
});

describe("to-device sealing", () => {
  const sender = createDeviceKeys();
  const recipient = createDeviceKeys();

  it("opens with the recipient's box key when sealed without a prekey", async () => {
    const sealed = await sealToDevice(payload, sender.box.secretKey, { boxPublicKey: recipient.box.publicKey });
    assert.equal(sealed.prekeyId, 0);
    assert.equal(sealed.algorithm, TO_DEVICE_ALGORITHM);
    const opened = await openToDevice(sealed, sender.box.publicKey, recipient.box.secretKey);
    assert.equal(opened.kind.case, "keyRequest");
    assert.equal(opened.kind.value?.conversationId, "c1");
  });

  it("seals to the claimed prekey, which only the prekey's secret opens", async () => {
    const prekey = await createPrekey(42, recipient.signing.secretKey);
    const sealed = await sealToDevice(payload, sender.box.secretKey, { boxPublicKey: recipient.box.publicKey, prekey });
    assert.equal(sealed.prekeyId, 42);
    assert.equal((await openToDevice(sealed, sender.box.publicKey, prekey.secretKey)).kind.case, "keyRequest");
    await assertDecryptError(() => openToDevice(sealed, sender.box.publicKey, recipient.box.secretKey), "tampered");
  });

  it("refuses a payload from another sender key, a tampered ciphertext or nonce, or an unknown algorithm", async () => {
    const sealed = await sealToDevice(payload, sender.box.secretKey, { boxPublicKey: recipient.box.publicKey });
    await assertDecryptError(() => openToDevice(sealed, createDeviceKeys().box.publicKey, recipient.box.secretKey), "tampered");
    await assertDecryptError(() => openToDevice({ ...sealed, ciphertext: flipBit(sealed.ciphertext, -1) }, sender.box.publicKey, recipient.box.secretKey), "tampered");
    await assertDecryptError(() => openToDevice({ ...sealed, nonce: flipBit(sealed.nonce, 0) }, sender.box.publicKey, recipient.box.secretKey), "tampered");
    await assertDecryptError(() => openToDevice({ ...sealed, algorithm: "rot13" }, sender.box.publicKey, recipient.box.secretKey), "malformed");
  });
});
