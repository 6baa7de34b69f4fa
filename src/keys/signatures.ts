/**
 * Ed25519 signature checks for the key directory. The server never signs anything; it only
 * refuses keys whose signatures do not verify, so a client that trusts the directory still
 * verifies for itself, and a buggy client cannot publish keys other devices would reject.
 * Node's OpenSSL does the math (far faster than a JavaScript implementation).
 */
import { createPublicKey, verify } from "node:crypto";

export const SIGNING_KEY_BYTES = 32;
export const BOX_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/** True when `signature` is signingPublicKey's detached Ed25519 signature of `message`. */
export function verifiesDetached(message: Uint8Array, signature: Uint8Array, signingPublicKey: Uint8Array): boolean {
  if (signingPublicKey.length !== SIGNING_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  try {
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(signingPublicKey).toString("base64url") }, format: "jwk" });
    return verify(null, message, key, signature);
  } catch {
    return false; // not a point on the curve
  }
}
