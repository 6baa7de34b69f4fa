/**
 * Where the next page of a PostgreSQL search starts, as the opaque SearchAfter the page token
 * carries. Each shape is tagged, so a page always continues the way its first page was
 * answered even if the statistics that chose the plan change in between, and every value is
 * checked before it reaches SQL: anything else is a forged or foreign token.
 */
import { InvalidInputError } from "../errors.ts";
import type { SearchAfter } from "./search-index.ts";

/** Stored times lie between years 1 and 9999; this bounds a token's time so PostgreSQL can read it. */
const YEAR_1_MS = -62_135_596_800_000;
const YEAR_10000_MS = 253_402_300_800_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A match's place in recency order: (created_at, message_id), both descending. */
export interface SortKey {
  readonly createdMs: number;
  readonly messageId: string;
}

/** A match's place in relevance order: score, then its sort key, all descending. */
export interface ScoredKey extends SortKey {
  readonly score: number;
}

/**
 * A window of a broad RELEVANCE search: every match with sort key in (lower, upper], ranked.
 * `upper` null is the newest end; `lower` null reaches the oldest match. `range` is null when
 * the window is still to be opened (its lower end is found by the next call).
 */
export interface WindowCursor {
  readonly kind: "window";
  readonly upper: SortKey | null;
  readonly range: { readonly lower: SortKey | null; readonly after: ScoredKey } | null;
}

/** RECENCY: below `after`, or from it on when `inclusive` (where a window of matches ended). */
export interface RecentCursor {
  readonly kind: "recent";
  readonly after: SortKey;
  readonly inclusive: boolean;
}

export type Cursor = { readonly kind: "scored"; readonly after: ScoredKey } | RecentCursor | WindowCursor;

const NONE = "";

export function encodeCursor(cursor: Cursor): SearchAfter {
  const key = (k: SortKey | null) => (k === null ? [NONE, NONE] : [k.createdMs, k.messageId]);
  const scored = (k: ScoredKey) => [k.score, k.createdMs, k.messageId];
  switch (cursor.kind) {
    case "scored":
      return ["s", ...scored(cursor.after)];
    case "recent":
      return [cursor.inclusive ? "u" : "t", ...key(cursor.after)];
    case "window":
      return ["w", ...key(cursor.upper), ...(cursor.range === null ? [] : [...key(cursor.range.lower), ...scored(cursor.range.after)])];
  }
}

export function decodeCursor(after: SearchAfter): Cursor {
  const [tag, ...rest] = after;
  const cursor =
    tag === "s" && rest.length === 3
      ? scoredKey(rest, 0) && { kind: "scored" as const, after: scoredKey(rest, 0)! }
      : (tag === "t" || tag === "u") && rest.length === 2
        ? sortKey(rest, 0) && { kind: "recent" as const, after: sortKey(rest, 0)!, inclusive: tag === "u" }
        : tag === "w" && (rest.length === 2 || rest.length === 7)
          ? windowCursor(rest)
          : null;
  if (!cursor) throw new InvalidInputError("page_token", "is not a token this call issued");
  return cursor;
}

function windowCursor(rest: readonly (string | number)[]): WindowCursor | null {
  const upper = optionalKey(rest, 0);
  if (upper === undefined) return null;
  if (rest.length === 2) return { kind: "window", upper, range: null };
  const lower = optionalKey(rest, 2);
  const after = scoredKey(rest, 4);
  if (lower === undefined || after === null) return null;
  return { kind: "window", upper, range: { lower, after } };
}

/** A key, null for an open end, undefined when invalid. */
function optionalKey(values: readonly (string | number)[], at: number): SortKey | null | undefined {
  if (values[at] === NONE && values[at + 1] === NONE) return null;
  return sortKey(values, at) ?? undefined;
}

function sortKey(values: readonly (string | number)[], at: number): SortKey | null {
  const createdMs = values[at];
  const messageId = values[at + 1];
  const valid =
    typeof createdMs === "number" &&
    Number.isSafeInteger(createdMs) &&
    createdMs >= YEAR_1_MS &&
    createdMs < YEAR_10000_MS &&
    typeof messageId === "string" &&
    UUID.test(messageId);
  return valid ? { createdMs, messageId } : null;
}

function scoredKey(values: readonly (string | number)[], at: number): ScoredKey | null {
  const score = values[at];
  const key = sortKey(values, at + 1);
  return typeof score === "number" && Number.isFinite(score) && key !== null ? { score, ...key } : null;
}
