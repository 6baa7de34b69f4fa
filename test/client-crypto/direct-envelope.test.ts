/** DIRECT envelopes: a fresh key per message, boxed to each device that may read it. */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DirectCiphertextSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import {
  DIRECT_ALGORITHM,
  createDeviceKeys,
  openDirectBody,
  openDirectMessageKey,
  readDirectCiphertext,
  sealDirect,
  type SealedDirect,
} from "../../src/client/crypto/index.ts";
import { EncryptedEnvelopeSchema, type EncryptedEnvelope } from "../../gen/parley/v1/message_pb.ts";
import { assertDecryptError, content, flipBit } from "./helpers.ts";

describe("direct envelopes", () => {
  const sender = createDeviceKeys();
  const peerPhone = createDeviceKeys();
  const peerLaptop = createDeviceKeys();
  let sealed: SealedDirect;
  before(async () => {
    sealed = await sealDirect({
      content: content("hello Bob"),
      conversationId: "conversation-1",
      senderDeviceId: "alice-1",
      senderBoxSecretKey: sender.box.secretKey,
      recipients: [
        { deviceId: "bob-1", boxPublicKey: peerPhone.box.publicKey },
        { deviceId: "bob-2", boxPublicKey: peerLaptop.box.publicKey },
      ],
      keyEpoch: 3,
    });
  });

  async function open(envelope: EncryptedEnvelope, deviceId = "bob-1", boxSecretKey = peerPhone.box.secretKey, senderBoxPublicKey = sender.box.publicKey, conversationId = "conversation-1") {
    const ciphertext = readDirectCiphertext(envelope);
    return openDirectBody(envelope, ciphertext, await openDirectMessageKey(ciphertext, { deviceId, boxSecretKey }, senderBoxPublicKey), conversationId);
  }

  it("names the construction, the sender device and the epoch", async () => {
    assert.equal(sealed.envelope.algorithm, DIRECT_ALGORITHM);
    assert.equal(sealed.envelope.keyId, "alice-1");
    assert.equal(sealed.envelope.keyEpoch, 3);
    assert.equal(sealed.messageKey.length, 32);
  });

  it("opens on every recipient device", async () => {
    assert.equal((await open(sealed.envelope)).text, "hello Bob");
    assert.equal((await open(sealed.envelope, "bob-2", peerLaptop.box.secretKey)).text, "hello Bob");
  });

  it("opens with the message key alone, as a re-shared key is used", async () => {
    const ciphertext = readDirectCiphertext(sealed.envelope);
    assert.equal(openDirectBody(sealed.envelope, ciphertext, sealed.messageKey, "conversation-1").text, "hello Bob");
  });

  it("does not open in another conversation, or at another key epoch, than it was sealed for", async () => {
    await assertDecryptError(() => open(sealed.envelope, "bob-1", peerPhone.box.secretKey, sender.box.publicKey, "conversation-2"), "tampered");
    await assertDecryptError(() => open({ ...sealed.envelope, keyEpoch: 4 }), "tampered");
  });

  it("says not_for_this_device on a device it was not boxed to", async () => {
    await assertDecryptError(() => open(sealed.envelope, "bob-3", createDeviceKeys().box.secretKey), "not_for_this_device");
  });

  it("refuses a key box opened with the wrong keys", async () => {
    await assertDecryptError(() => open(sealed.envelope, "bob-1", peerLaptop.box.secretKey), "tampered");
    await assertDecryptError(() => open(sealed.envelope, "bob-1", peerPhone.box.secretKey, createDeviceKeys().box.publicKey), "tampered");
  });

  it("refuses a tampered body, nonce or key box", async () => {
    const ciphertext = fromBinary(DirectCiphertextSchema, sealed.envelope.ciphertext);
    const withBody = (body: Uint8Array) => toBinary(DirectCiphertextSchema, create(DirectCiphertextSchema, { ...ciphertext, body }));
    await assertDecryptError(() => open({ ...sealed.envelope, ciphertext: withBody(flipBit(ciphertext.body, -1)) }), "tampered");
    await assertDecryptError(() => open({ ...sealed.envelope, nonce: flipBit(sealed.envelope.nonce, 5) }), "tampered");
    const boxes = ciphertext.keyBoxes.map((box) => ({ ...box, boxedKey: flipBit(box.boxedKey, 0) }));
    const withBoxes = toBinary(DirectCiphertextSchema, create(DirectCiphertextSchema, { ...ciphertext, keyBoxes: boxes }));
    await assertDecryptError(() => open({ ...sealed.envelope, ciphertext: withBoxes }), "tampered");
  });

  it("refuses an envelope whose key id is not its sender device, and garbage", async () => {
    await assertDecryptError(() => open({ ...sealed.envelope, keyId: "mallory-1" }), "tampered");
    await assertDecryptError(() => open(create(EncryptedEnvelopeSchema, { ...sealed.envelope, ciphertext: Uint8Array.of(0xff, 0xff) })), "malformed");
    await assertDecryptError(() => open({ ...sealed.envelope, algorithm: "parley-sender-key-v1" }), "malformed");
  });
});
