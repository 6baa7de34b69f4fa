/**
 * Feed cursors in the byte format the partitioned-log contract documents, written here from the
 * contract rather than imported from src/log/cursor.ts, so tests can read the cursors a server
 * hands out and forge ones it never issued (foreign, old, wrong partition count, malformed):
 *
 *   base64url, no padding, of [0x02 version][8 bytes log id][varint N][N varints: position per partition]
 *
 * Varints are unsigned LEB128 (7 bits a byte, low group first, high bit = more follows).
 */
import assert from "node:assert/strict";

/** The version byte of partitioned-log cursors. */
export const CURSOR_VERSION = 0x02;

/** A decoded cursor: the log id as 16 lower-case hex characters and one position per partition. */
export interface LogCursor {
  logId: string;
  positions: bigint[];
}

/** Unsigned LEB128 of a non-negative integer (any size: a forger may overflow 64 bits on purpose). */
export function varint(value: bigint | number): number[] {
  let v = BigInt(value);
  if (v < 0n) throw new RangeError("varint of a negative number");
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return out;
}

export function toBase64url(bytes: Uint8Array | readonly number[]): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes)).toString("base64url").replace(/=+$/, "");
}

export interface CursorBytesOptions {
  /** Defaults to CURSOR_VERSION. */
  version?: number;
  /** 16 hex characters. */
  logId: string;
  positions: readonly bigint[];
  /** The partition count written (defaults to positions.length); lets a forger lie about it. */
  count?: number;
}

/** The raw bytes of a cursor, for forging (tamper with them before toBase64url). */
export function cursorBytes(options: CursorBytesOptions): number[] {
  assert.match(options.logId, /^[0-9a-f]{16}$/, "a log id is 16 lower-case hex characters");
  return [
    options.version ?? CURSOR_VERSION,
    ...Buffer.from(options.logId, "hex"),
    ...varint(options.count ?? options.positions.length),
    ...options.positions.flatMap((p) => varint(p)),
  ];
}

/** A well-formed cursor text. */
export function forgeCursor(cursor: LogCursor): string {
  return toBase64url(cursorBytes(cursor));
}

/**
 * Reads a cursor the server issued, strictly by the contract; throws (naming the problem) on
 * anything else, so a test learns at once when the server issues cursors of another shape.
 */
export function readCursor(text: string): LogCursor {
  assert.match(text, /^[A-Za-z0-9_-]+$/, `cursor ${JSON.stringify(text)} is unpadded base64url`);
  const bytes = Buffer.from(text, "base64url");
  assert.equal(toBase64url(bytes), text, `cursor ${JSON.stringify(text)} is canonical base64url`);
  assert.ok(bytes.length >= 10, `cursor ${text}: at least version, log id and N (${bytes.length} bytes)`);
  assert.equal(bytes[0], CURSOR_VERSION, `cursor ${text}: version byte`);
  const logId = bytes.subarray(1, 9).toString("hex");
  let at = 9;
  const next = (): bigint => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      assert.ok(at < bytes.length, `cursor ${text}: truncated varint at byte ${at}`);
      const b = bytes[at++]!;
      value |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return value;
    }
    assert.fail(`cursor ${text}: varint longer than 10 bytes`);
  };
  const n = Number(next());
  const positions: bigint[] = [];
  for (let i = 0; i < n; i++) positions.push(next());
  assert.equal(at, bytes.length, `cursor ${text}: no bytes after the ${n} positions`);
  return { logId, positions };
}

/** A log id that is not `logId` (another deployment's). */
export function otherLogId(logId: string): string {
  const flipped = (parseInt(logId[0]!, 16) ^ 0x8).toString(16);
  return flipped + logId.slice(1);
}
