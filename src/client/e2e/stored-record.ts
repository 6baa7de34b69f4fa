/**
 * How the key manager's records sit in a ClientStore: JSON, with byte arrays as hex. Text is
 * easy to inspect and migrate, and every record is small next to the messages it protects.
 */
import { fromHex, toHex } from "../crypto/index.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface HexBytes {
  readonly $hex: string;
}

function isHexBytes(value: unknown): value is HexBytes {
  return typeof value === "object" && value !== null && typeof (value as { $hex?: unknown }).$hex === "string";
}

/** A record as store bytes. */
export function encodeRecord(record: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(record, (_key, value: unknown) => (value instanceof Uint8Array ? { $hex: toHex(value) } : value)));
}

/**
 * A record from store bytes. The type is the caller's word for it: only this module writes
 * under the key manager's store keys, with the same record types.
 */
export function decodeRecord<T>(bytes: Uint8Array): T {
  return JSON.parse(decoder.decode(bytes), (_key, value: unknown) => (isHexBytes(value) ? fromHex(value.$hex) : value)) as T;
}
