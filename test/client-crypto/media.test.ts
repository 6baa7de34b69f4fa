/** Encrypted media: sealed under its own key, checked by SHA-512 before opening. */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { ENCRYPTED_MEDIA_CONTENT_TYPE, decryptMedia, encryptMedia } from "../../src/client/crypto/index.ts";
import { assertDecryptError, flipBit } from "./helpers.ts";

describe("encrypted media", () => {
  const file = nacl.randomBytes(10_000);
  const { ciphertext, mediaKey } = encryptMedia(file, { contentType: "image/jpeg", fileName: "cat.jpg" });

  it("round-trips, describing the real file in the key", async () => {
    assert.deepEqual(decryptMedia(ciphertext, mediaKey), file);
    assert.equal(mediaKey.contentType, "image/jpeg");
    assert.equal(mediaKey.fileName, "cat.jpg");
    assert.equal(mediaKey.size, 10_000n);
    assert.deepEqual(mediaKey.ciphertextSha512, nacl.hash(ciphertext));
    assert.equal(ENCRYPTED_MEDIA_CONTENT_TYPE, "application/octet-stream");
  });

  it("refuses a tampered upload before opening it", async () => {
    await assertDecryptError(() => decryptMedia(flipBit(ciphertext, 100), mediaKey), "tampered");
  });

  it("refuses a blob that matches its hash but not its key or nonce", async () => {
    await assertDecryptError(() => decryptMedia(ciphertext, { ...mediaKey, key: nacl.randomBytes(32) }), "tampered");
    await assertDecryptError(() => decryptMedia(ciphertext, { ...mediaKey, nonce: flipBit(mediaKey.nonce, 0) }), "tampered");
    await assertDecryptError(() => decryptMedia(ciphertext, { ...mediaKey, size: 9_999n }), "tampered");
  });
});
