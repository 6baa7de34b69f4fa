/**
 * Opaque keyset cursors. A token is base64url JSON with a kind tag, so a token from one
 * list call is rejected by another instead of silently paging the wrong thing.
 */
import { InvalidInputError } from "./errors.ts";

export function encodePageToken(kind: string, position: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify({ k: kind, ...position })).toString("base64url");
}

/** Decodes a token of the given kind, checking each listed key is a string or number. */
export function decodePageToken<K extends string>(
  kind: string,
  token: string,
  keys: readonly K[],
): Record<K, string | number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = null;
  }
  const record = parsed as Record<string, unknown> | null;
  const valid =
    record !== null &&
    typeof record === "object" &&
    record.k === kind &&
    keys.every((key) => typeof record[key] === "string" || typeof record[key] === "number");
  if (!valid) throw new InvalidInputError("page_token", "is not a token this call issued");
  return record as Record<K, string | number>;
}
