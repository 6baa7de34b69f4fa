/**
 * HMAC-SHA-512 (RFC 2104) on nacl.hash, the one SHA-512 available in both Node and browsers
 * synchronously (WebCrypto's is async, Node's crypto module is Node only).
 */
import nacl from "tweetnacl";
import { concatBytes } from "./bytes.ts";

/** SHA-512's block size in bytes: keys are padded (or first hashed) to it. */
const BLOCK_SIZE = 128;
const INNER_PAD = 0x36;
const OUTER_PAD = 0x5c;

/** HMAC-SHA-512 of message under key; 64 bytes. */
export function hmacSha512(key: Uint8Array, message: Uint8Array): Uint8Array {
  const blockKey = new Uint8Array(BLOCK_SIZE);
  blockKey.set(key.length > BLOCK_SIZE ? nacl.hash(key) : key);
  const inner = blockKey.map((byte) => byte ^ INNER_PAD);
  const outer = blockKey.map((byte) => byte ^ OUTER_PAD);
  return nacl.hash(concatBytes(outer, nacl.hash(concatBytes(inner, message))));
}
