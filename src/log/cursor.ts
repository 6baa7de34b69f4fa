/**
 * Feed cursors: "everything relevant to you up to this log position has been delivered".
 * Opaque to clients: base64url (no padding) of
 *   [version 0x02][log id, 8 bytes][varint partition count N][N varint positions].
 * The log id names the deployment's log (a cursor from another deployment, or from before the
 * partition count changed, cannot be replayed here); the version byte lets the format grow.
 * Single-position cursors of the previous release ("p1.<base36>") are recognised as such.
 */
import { InvalidInputError } from "../errors.ts";
import type { LogPosition } from "./log-position.ts";
import { MAX_PARTITIONS } from "./partitions.ts";

const VERSION = 0x02;
const LOG_ID_BYTES = 8;
const LEGACY = /^p1\.[0-9a-z]{1,13}$/;
/** 2^63: positions are PostgreSQL bigints. */
const MAX_POSITION = 1n << 63n;

/** A cursor as issued: the log it belongs to and a position in it. */
export interface FeedCursor {
  /** 16 hex characters: the deployment's event log id. */
  logId: string;
  positions: LogPosition;
}

export type DecodedCursor = ({ legacy: false } & FeedCursor) | { legacy: true };

export function encodeCursor({ logId, positions }: FeedCursor): string {
  const bytes: number[] = [VERSION, ...Buffer.from(logId, "hex")];
  writeVarint(bytes, BigInt(positions.length));
  for (const position of positions) writeVarint(bytes, position);
  return Buffer.from(bytes).toString("base64url");
}

/** Decodes a cursor; throws InvalidInputError("cursor") for anything Parley did not issue. */
export function decodeCursor(text: string): DecodedCursor {
  if (LEGACY.test(text)) return { legacy: true };
  const invalid = () => new InvalidInputError("cursor", "is not a cursor Parley issued");
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw invalid();
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text || bytes[0] !== VERSION || bytes.length < 1 + LOG_ID_BYTES + 1) throw invalid();
  const logId = bytes.subarray(1, 1 + LOG_ID_BYTES).toString("hex");
  const reader = { bytes, offset: 1 + LOG_ID_BYTES };
  const count = readVarint(reader);
  if (count === null || count < 1n || count > BigInt(MAX_PARTITIONS)) throw invalid();
  const positions: bigint[] = [];
  for (let i = 0n; i < count; i++) {
    const position = readVarint(reader);
    if (position === null) throw invalid();
    positions.push(position);
  }
  if (reader.offset !== bytes.length) throw invalid();
  return { legacy: false, logId, positions };
}

function writeVarint(out: number[], value: bigint): void {
  let rest = value;
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
}

/** The next varint, or null when the bytes end inside it or it exceeds a bigint. */
function readVarint(reader: { bytes: Uint8Array; offset: number }): bigint | null {
  let value = 0n;
  for (let shift = 0n; reader.offset < reader.bytes.length; shift += 7n) {
    const byte = reader.bytes[reader.offset++]!;
    value |= BigInt(byte & 0x7f) << shift;
    if (value >= MAX_POSITION) return null;
    if ((byte & 0x80) === 0) return value;
  }
  return null;
}
