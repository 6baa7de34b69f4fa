/**
 * One-time X25519 prekeys: a sender seals its first payload to one so that stealing the
 * device's long-term box key later does not open it (the recipient deletes the secret after
 * use). The signing key vouches for each, as for the box key.
 */
import nacl from "tweetnacl";
import { signDetached, verifyDetached } from "./primitives.ts";

/** A prekey as uploaded to and claimed from the directory. */
export interface PublicPrekey {
  readonly keyId: number;
  readonly publicKey: Uint8Array;
  readonly signature: Uint8Array;
}

/** A prekey with its secret, kept by the device until a payload sealed to it arrives. */
export interface PrekeyPair extends PublicPrekey {
  readonly secretKey: Uint8Array;
}

/** A fresh prekey with the id the device chose (from its own monotonic counter). */
export async function createPrekey(keyId: number, signingSecretKey: Uint8Array): Promise<PrekeyPair> {
  const pair = nacl.box.keyPair();
  return { keyId, publicKey: pair.publicKey, secretKey: pair.secretKey, signature: await signDetached(pair.publicKey, signingSecretKey) };
}

/** True when the prekey was signed by the device it was claimed for. */
export async function verifyPrekey(prekey: PublicPrekey, signingPublicKey: Uint8Array): Promise<boolean> {
  return prekey.publicKey.length === nacl.box.publicKeyLength && (await verifyDetached(prekey.publicKey, prekey.signature, signingPublicKey));
}
