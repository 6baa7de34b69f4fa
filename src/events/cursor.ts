/**
 * Feed cursors. A cursor names a position in the event log: "everything relevant to you up to
 * here has been delivered". It is opaque to clients and versioned so it can grow (e.g. into a
 * per-shard vector) without breaking old ones.
 */
import { InvalidInputError } from "../errors.ts";

const PREFIX = "p1.";

export function encodeCursor(position: bigint): string {
  return PREFIX + position.toString(36);
}

export function decodeCursor(cursor: string): bigint {
  if (cursor.startsWith(PREFIX) && /^[0-9a-z]{1,13}$/.test(cursor.slice(PREFIX.length))) {
    let value = 0n;
    for (const digit of cursor.slice(PREFIX.length)) value = value * 36n + BigInt(parseInt(digit, 36));
    return value;
  }
  throw new InvalidInputError("cursor", "is not a cursor Parley issued");
}
