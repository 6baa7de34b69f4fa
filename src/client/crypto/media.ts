/**
 * Encrypted media: the file is sealed on the device under its own random key and uploaded as
 * an opaque blob; the key travels inside the (already encrypted) message content. The
 * ciphertext's SHA-512 rides along so a swapped upload is caught before opening.
 */
import { create } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { MediaKeySchema, type MediaKey } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { DecryptError } from "./decrypt-error.ts";

/** The content type encrypted uploads carry: the real one is inside the MediaKey. */
export const ENCRYPTED_MEDIA_CONTENT_TYPE = "application/octet-stream";

/** What the sender knows of the file besides its bytes. */
export interface MediaDescription {
  readonly contentType: string;
  readonly fileName?: string | undefined;
}

/** The blob to upload, and its key (set media_id once the upload has one). */
export interface EncryptedMedia {
  readonly ciphertext: Uint8Array;
  readonly mediaKey: MediaKey;
}

/** Seals a file under a fresh key. */
export function encryptMedia(file: Uint8Array, description: MediaDescription): EncryptedMedia {
  const key = nacl.randomBytes(nacl.secretbox.keyLength);
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const ciphertext = nacl.secretbox(file, nonce, key);
  const mediaKey = create(MediaKeySchema, {
    key,
    nonce,
    contentType: description.contentType,
    size: BigInt(file.length),
    ciphertextSha512: nacl.hash(ciphertext),
    fileName: description.fileName ?? "",
  });
  return { ciphertext, mediaKey };
}

/** Opens a downloaded blob with its MediaKey; anything altered is "tampered". */
export function decryptMedia(ciphertext: Uint8Array, mediaKey: MediaKey): Uint8Array {
  if (!nacl.verify(nacl.hash(ciphertext), mediaKey.ciphertextSha512)) throw new DecryptError("tampered", "media ciphertext does not match its SHA-512");
  if (mediaKey.key.length !== nacl.secretbox.keyLength || mediaKey.nonce.length !== nacl.secretbox.nonceLength) {
    throw new DecryptError("malformed", "media key or nonce has the wrong length");
  }
  const file = nacl.secretbox.open(ciphertext, mediaKey.nonce, mediaKey.key);
  if (file === null) throw new DecryptError("tampered", "media does not open with its key");
  if (BigInt(file.length) !== mediaKey.size) throw new DecryptError("tampered", "media size differs from the one announced");
  return file;
}
