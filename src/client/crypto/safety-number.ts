/**
 * Safety numbers: 60 digits two users compare out of band to know that the signing keys
 * their apps hold are each other's, not keys a server slipped in. Each side's half is slow to
 * compute (5,200 hashes) so finding a key with the same digits is costly; the halves are
 * sorted so both users see the same number.
 */
import nacl from "tweetnacl";
import { concatBytes, utf8 } from "./bytes.ts";

const ITERATIONS = 5200;
const VERSION = Uint8Array.of(0x00, 0x00);
const FINGERPRINT_BYTES = 30;
const DIGITS_PER_GROUP = 5;
const BYTES_PER_GROUP = 5;

/** One user's identity for a safety number: their id and a device's signing public key. */
export interface SafetyIdentity {
  readonly userId: string;
  readonly signingPublicKey: Uint8Array;
}

/** The safety number of two identities: 12 groups of 5 digits, separated by spaces. */
export function safetyNumber(a: SafetyIdentity, b: SafetyIdentity): string {
  const halves = [fingerprintDigits(a), fingerprintDigits(b)].sort();
  const digits = halves.join("");
  return (digits.match(/\d{5}/g) ?? []).join(" ");
}

/** 30 digits for one identity: 6 groups of 5 from 30 bytes of the iterated hash. */
function fingerprintDigits(identity: SafetyIdentity): string {
  const fixed = concatBytes(VERSION, identity.signingPublicKey, utf8(identity.userId));
  let digest: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < ITERATIONS; i++) digest = nacl.hash(concatBytes(fixed, digest));
  let digits = "";
  for (let offset = 0; offset < FINGERPRINT_BYTES; offset += BYTES_PER_GROUP) {
    let value = 0;
    for (const byte of digest.slice(offset, offset + BYTES_PER_GROUP)) value = value * 256 + byte;
    digits += (value % 10 ** DIGITS_PER_GROUP).toString().padStart(DIGITS_PER_GROUP, "0");
  }
  return digits;
}
