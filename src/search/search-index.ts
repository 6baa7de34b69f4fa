/**
 * The one interface both search backends implement (PostgreSQL full-text, OpenSearch). The
 * indexer writes through apply(); SearchService reads through search(); `npm run reindex`
 * rebuilds through rebuild(). Membership is not the index's business: the caller passes the
 * conversations to search, read from PostgreSQL when the search runs.
 */
import type { ParsedQuery } from "./query-parser.ts";

/** A message as the index keeps it (only plain-text messages are indexed). */
export interface IndexedMessage {
  readonly conversationId: string;
  readonly seq: bigint;
  readonly messageId: string;
  /** 1 when sent, bumped by each edit: the index never goes back to a lower one. */
  readonly version: number;
  readonly senderId: string;
  /** Millisecond precision, as clients see it. */
  readonly createdAt: Date;
  readonly text: string;
}

/** A message that was deleted (or is no longer indexable): it must never match again. */
export interface RemovedMessage {
  readonly conversationId: string;
  readonly seq: bigint;
  readonly messageId: string;
}

/** Changes to apply; idempotent and order-independent (versions and tombstones decide). */
export interface IndexChanges {
  readonly upserts: readonly IndexedMessage[];
  readonly removals: readonly RemovedMessage[];
}

/**
 * One change per message, as a backend writes it (a PostgreSQL statement cannot touch a row
 * twice; a bulk request need not carry stale versions): the highest version wins, and a
 * removal beats every version.
 */
export function collapseChanges(changes: IndexChanges): IndexChanges {
  const key = (m: { conversationId: string; seq: bigint }) => `${m.conversationId}/${m.seq}`;
  const removals = new Map(changes.removals.map((r) => [key(r), r]));
  const upserts = new Map<string, IndexedMessage>();
  for (const message of changes.upserts) {
    const k = key(message);
    if (removals.has(k)) continue;
    const seen = upserts.get(k);
    if (!seen || seen.version < message.version) upserts.set(k, message);
  }
  return { upserts: [...upserts.values()], removals: [...removals.values()] };
}

export type SearchOrdering = "relevance" | "recency";

/** Where the previous page ended: the sort key of its last hit, opaque to everyone but the backend. */
export type SearchAfter = readonly (string | number)[];

export interface IndexQuery {
  readonly query: ParsedQuery;
  /** Only these conversations (the caller's current ones); never empty. */
  readonly conversationIds: readonly string[];
  /**
   * Retention: for each of those conversations that has a deadline, only messages created
   * after it (milliseconds since the epoch) match. A conversation not in the map keeps
   * everything. Backends filter by it in the query, so a message past retention is never a hit
   * even before the sweeper removes its entry.
   */
  readonly retainedAfterMs?: ReadonlyMap<string, number>;
  readonly senderId: string | null;
  /** Inclusive, milliseconds since the epoch. */
  readonly createdFromMs: number | null;
  /** Exclusive, milliseconds since the epoch. */
  readonly createdBeforeMs: number | null;
  readonly order: SearchOrdering;
  readonly limit: number;
  readonly after: SearchAfter | null;
}

/** A message that matched, as the index knows it. */
export interface IndexHit {
  readonly conversationId: string;
  readonly seq: bigint;
  readonly messageId: string;
  /** The version that matched; older than the stored message when an edit is not indexed yet. */
  readonly version: number;
  readonly score: number;
}

export interface IndexPage {
  readonly hits: readonly IndexHit[];
  /** Where the next page starts; null when this was the last page. */
  readonly next: SearchAfter | null;
}

/** Fills a fresh copy of the index and makes it the live one (see src/search/reindex.ts). */
export interface IndexRebuild {
  /** Names the copy being filled, so an interrupted rebuild can resume into it. */
  readonly target: string;
  /** Writes messages into the copy; existing versions are overwritten (the source is PostgreSQL). */
  write(changes: IndexChanges): Promise<void>;
  /** Makes the copy live and drops what it replaced. */
  finish(): Promise<void>;
}

export interface SearchIndex {
  /** "postgres" or "opensearch": names the backend in logs, metrics and reindex state. */
  readonly backend: string;
  apply(changes: IndexChanges): Promise<void>;
  search(query: IndexQuery): Promise<IndexPage>;
  /** Starts a rebuild, or resumes the one filling `resumeTarget`. */
  rebuild(resumeTarget: string | null): Promise<IndexRebuild>;
  close(): Promise<void>;
}
