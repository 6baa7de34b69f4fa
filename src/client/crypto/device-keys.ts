/**
 * A device's long-term keys: an Ed25519 signing pair (its identity, what safety numbers and
 * group signatures rest on) and an X25519 box pair, whose public half the signing key vouches
 * for so a directory cannot substitute its own box key unnoticed.
 */
import nacl from "tweetnacl";
import { compareBytes, concatBytes } from "./bytes.ts";
import { verifyDetached } from "./primitives.ts";

/** The private and public halves of a device's keys. Never leaves the device. */
export interface DeviceKeys {
  readonly signing: nacl.SignKeyPair;
  readonly box: nacl.BoxKeyPair;
  /** Ed25519 detached signature of box.publicKey by signing.secretKey. */
  readonly boxKeySignature: Uint8Array;
}

/** The public half of a device as the directory lists it. */
export interface PublicDeviceKeys {
  readonly signingPublicKey: Uint8Array;
  readonly boxPublicKey: Uint8Array;
  readonly boxKeySignature: Uint8Array;
}

const SIGNING_SECRET_KEY_LENGTH = nacl.sign.secretKeyLength;
const BOX_SECRET_KEY_LENGTH = nacl.box.secretKeyLength;

/**
 * Fresh keys for a new device. Synchronous on tweetnacl: it signs once per device (and once
 * per load), and Ed25519 being deterministic, the signature is the one WebCrypto would make.
 */
export function createDeviceKeys(): DeviceKeys {
  const signing = nacl.sign.keyPair();
  const box = nacl.box.keyPair();
  return { signing, box, boxKeySignature: nacl.sign.detached(box.publicKey, signing.secretKey) };
}

/** True when a directory entry's box key is really vouched for by its signing key. */
export async function verifyDeviceBoxKey(device: PublicDeviceKeys): Promise<boolean> {
  return device.boxPublicKey.length === nacl.box.publicKeyLength && (await verifyDetached(device.boxPublicKey, device.boxKeySignature, device.signingPublicKey));
}

/**
 * The secrets in one byte string for a ClientStore; the public halves and the signature are
 * derived again on load from the 32-byte seeds, so a store cannot hold a mismatched pair.
 */
export function serializeDeviceKeys(keys: DeviceKeys): Uint8Array {
  return concatBytes(keys.signing.secretKey, keys.box.secretKey);
}

/** Inverse of serializeDeviceKeys. */
export function deserializeDeviceKeys(bytes: Uint8Array): DeviceKeys {
  if (bytes.length !== SIGNING_SECRET_KEY_LENGTH + BOX_SECRET_KEY_LENGTH) throw new Error("stored device keys have the wrong length");
  // A tweetnacl signing secret key is seed ‖ public key: the public half is derived from the
  // seed and must match the copy stored, or signatures would not verify under the key listed.
  const storedSigningSecretKey = bytes.slice(0, SIGNING_SECRET_KEY_LENGTH);
  const signing = nacl.sign.keyPair.fromSeed(storedSigningSecretKey.slice(0, nacl.sign.seedLength));
  if (compareBytes(signing.secretKey, storedSigningSecretKey) !== 0) throw new Error("stored device keys: the signing public key does not match its seed");
  const box = nacl.box.keyPair.fromSecretKey(bytes.slice(SIGNING_SECRET_KEY_LENGTH));
  return { signing, box, boxKeySignature: nacl.sign.detached(box.publicKey, signing.secretKey) };
}
