/**
 * Blind-index search: each word of a message becomes a keyed token the server can match
 * without learning the word. Tokens are whole words only (a prefix token would let the
 * server guess words a letter at a time), and the key is per conversation and epoch, so the
 * same word gives unrelated tokens elsewhere and after a member leaves.
 */
import nacl from "tweetnacl";
import { compareBytes, concatBytes, utf8 } from "./bytes.ts";
import { hmacSha512 } from "./hmac-sha512.ts";

/** The most tokens a message carries (the server's limit). */
export const MAX_TOKENS_PER_MESSAGE = 256;
/** The most tokens one BlindQuery carries (the server's limit). */
export const MAX_TOKENS_PER_QUERY = 16;

const TOKEN_LENGTH = 16;
const WORD_LABEL = utf8("w:");
const COMBINING_MARKS = /\p{M}/gu;
const WORD_SEPARATORS = /[^\p{L}\p{N}]+/u;

/** A fresh 32-byte search key for a (conversation, epoch). */
export function createSearchKey(): Uint8Array {
  return nacl.randomBytes(32);
}

/**
 * The distinct words of a text, normalised so that what a user types matches what was sent
 * whatever the case, accents or compatibility forms: NFKC, lower case, diacritics stripped,
 * split on anything that is not a letter or digit. In first-seen order, at most limit.
 */
export function searchWords(text: string, limit = MAX_TOKENS_PER_MESSAGE): string[] {
  const folded = text.normalize("NFKC").toLowerCase().normalize("NFD").replace(COMBINING_MARKS, "").normalize("NFC");
  const words = new Set(folded.split(WORD_SEPARATORS).filter((word) => word !== ""));
  return [...words].slice(0, limit);
}

/** The token of one normalised word: the first 16 bytes of HMAC-SHA-512(key, "w:" ‖ word). */
export function blindToken(searchKey: Uint8Array, word: string): Uint8Array {
  return hmacSha512(searchKey, concatBytes(WORD_LABEL, utf8(word))).slice(0, TOKEN_LENGTH);
}

/** The tokens of a text's words under a search key. */
export function blindTokens(searchKey: Uint8Array, text: string, limit = MAX_TOKENS_PER_MESSAGE): Uint8Array[] {
  return searchWords(text, limit).map((word) => blindToken(searchKey, word));
}

/**
 * The key a device sends with when several were made for one epoch (two members sent first
 * at once): the one whose SHA-512 sorts lowest, so every device converges on the same one.
 */
export function preferredSearchKey(keys: readonly Uint8Array[]): Uint8Array | undefined {
  return keys
    .map((key) => ({ key, digest: nacl.hash(key) }))
    .sort((a, b) => compareBytes(a.digest, b.digest))[0]?.key;
}
