/**
 * The PostgreSQL full-text backend: table message_search (migrations/0005_search.sql), a GIN
 * index over tsvectors of the normalized words, and queries built from the parsed query with
 * phraseto_tsquery over bind parameters (never to_tsquery on user text). Relevance is ts_rank,
 * then recency. Used when OPENSEARCH_URL is unset.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { InvalidInputError } from "../errors.ts";
import { decodeCursor, encodeCursor, type Cursor } from "./postgres-cursor.ts";
import { COLUMNS, CREATED_MS, type HitRow, keySql, queryParts, scoredKeyOf, scoredSql, sortKeyOf, toHit } from "./postgres-query.ts";
import { searchRecentWindows, searchWindows } from "./search-windows.ts";
import { collapseChanges, type IndexChanges, type IndexedMessage, type IndexPage, type IndexQuery, type IndexRebuild, type RemovedMessage, type SearchIndex } from "./search-index.ts";
import { createLexemeStats, type LexemeStats } from "./lexeme-stats.ts";
import { indexableText } from "./text-analysis.ts";

/** The text search configuration: no stemming or stop words, so exact words always match. */
const CONFIG = sql.lit("simple");

export function createPostgresSearch(db: Kysely<Database>, options: PostgresSearchOptions = {}): SearchIndex {
  const stats = createLexemeStats(db);
  const windowReadRows = options.windowReadRows ?? DEFAULT_WINDOW_READ_ROWS;
  return {
    backend: "postgres",
    apply: (changes) => applyChanges(db, changes, "newer"),
    search: (query) => search(db, stats, windowReadRows, query),
    async rebuild(): Promise<IndexRebuild> {
      // The rows are rebuilt in place: each stays searchable while it is rewritten, and a
      // rewrite at the same version refreshes its words (after an analysis change).
      return { target: "message_search", write: (changes) => applyChanges(db, changes, "same-or-newer"), finish: async () => {} };
    },
    async close() {},
  };
}

/** Which stored versions an upsert may replace. */
type Overwrite = "newer" | "same-or-newer";

async function applyChanges(db: Kysely<Database>, changes: IndexChanges, overwrite: Overwrite): Promise<void> {
  const { upserts, removals } = collapseChanges(changes);
  if (removals.length > 0) await markDeleted(db, removals);
  if (upserts.length > 0) await upsert(db, upserts, overwrite);
}

/** Tombstones: only what keeps a replayed event from bringing the message back (no text, sender or time). */
async function markDeleted(db: Kysely<Database>, removals: readonly RemovedMessage[]): Promise<void> {
  await sql`
    insert into message_search (conversation_id, seq, message_id, version, sender_id, created_at, deleted, tsv)
    select c, s, m, 0, '', 'epoch', true, null
    from unnest(${removals.map((r) => r.conversationId)}::uuid[], ${removals.map((r) => r.seq.toString())}::int8[],
                ${removals.map((r) => r.messageId)}::uuid[]) as r(c, s, m)
    on conflict (conversation_id, seq) do update set deleted = true, tsv = null, sender_id = '', created_at = 'epoch'`.execute(db);
}

async function upsert(db: Kysely<Database>, messages: readonly IndexedMessage[], overwrite: Overwrite): Promise<void> {
  const replaces = overwrite === "newer" ? sql`message_search.version < excluded.version` : sql`message_search.version <= excluded.version`;
  await sql`
    insert into message_search (conversation_id, seq, message_id, version, sender_id, created_at, deleted, tsv)
    select c, s, m, v, snd, t, false, to_tsvector(${CONFIG}, txt)
    from unnest(${messages.map((m) => m.conversationId)}::uuid[], ${messages.map((m) => m.seq.toString())}::int8[],
                ${messages.map((m) => m.messageId)}::uuid[], ${messages.map((m) => m.version)}::int4[],
                ${messages.map((m) => m.senderId)}::text[], ${messages.map((m) => m.createdAt.toISOString())}::timestamptz[],
                ${messages.map((m) => indexableText(m.text))}::text[]) as r(c, s, m, v, snd, t, txt)
    on conflict (conversation_id, seq) do update
      set message_id = excluded.message_id, version = excluded.version, sender_id = excluded.sender_id,
          created_at = excluded.created_at, tsv = excluded.tsv
      where not message_search.deleted and ${replaces}`.execute(db);
}

/**
 * A query whose words are in at least this share of all messages is broad: reading the
 * caller's conversations newest first (index message_search_recent) meets a match every ten
 * rows or sooner, which beats collecting every match through the GIN index (whose bitmap holds
 * the matches of every conversation, not only the caller's, and grows with the share).
 */
const BROAD_SHARE = 0.1;

export interface PostgresSearchOptions {
  /** See SearchConfig.windowReadRows. */
  readonly windowReadRows?: number;
}

const DEFAULT_WINDOW_READ_ROWS = 3000;

/**
 * Three plans. Normally the matches come from the GIN index and are all ranked. A broad
 * query (a very common word: tens of thousands of matches) instead reads each of the caller's
 * conversations newest first:
 * - RELEVANCE ranks within windows of the newest messages (search-windows.ts);
 * - RECENCY (without a sender filter, which that index does not hold) takes the newest
 *   matches of the newest windows, which are exactly the newest matches.
 * A page token continues the plan its first page took, whatever the statistics say by then.
 */
async function search(db: Kysely<Database>, stats: LexemeStats, windowReadRows: number, q: IndexQuery): Promise<IndexPage> {
  const cursor = q.after === null ? null : decodeCursor(q.after);
  const relevance = q.order === "relevance";
  if (cursor !== null && (cursor.kind === "recent") === relevance) throw new InvalidInputError("page_token", "is not a token this call issued");
  const parts = queryParts(q);
  const share = relevance ? (cursor === null ? await stats.shareOf(q.query) : 0) : q.senderId === null ? await stats.shareOf(q.query) : 0;
  if (relevance && (cursor === null ? share >= BROAD_SHARE : cursor.kind === "window")) {
    const window = cursor?.kind === "window" ? cursor : { kind: "window" as const, upper: null, range: null };
    const rowsPerConversation = Math.max(2, Math.ceil(windowReadRows / q.conversationIds.length));
    const page = await searchWindows(db, parts, window, rowsPerConversation, q.limit);
    return { hits: page.rows.map(toHit), next: page.next === null ? null : encodeCursor(page.next) };
  }
  if (cursor?.kind === "window") throw new InvalidInputError("page_token", "is not a token this call issued");
  if (!relevance && share >= BROAD_SHARE) {
    // About two pages' worth of matches per window, by the statistics' share.
    const rowsPerConversation = Math.max(2, Math.ceil((2 * (q.limit + 1)) / (Math.min(1, share) * q.conversationIds.length)));
    const page = await searchRecentWindows(db, parts, cursor?.kind === "recent" ? { key: cursor.after, inclusive: cursor.inclusive } : null, rowsPerConversation, q.limit);
    const next: Cursor | null = page.next === null ? null : { kind: "recent", after: page.next.key, inclusive: page.next.inclusive };
    return { hits: page.rows.map(toHit), next: next === null ? null : encodeCursor(next) };
  }
  const conditions = [...parts.conditions];
  if (cursor?.kind === "recent") conditions.push(sql`(s.created_at, s.message_id) ${cursor.inclusive ? sql`<=` : sql`<`} ${keySql(cursor.after)}`);
  const candidates =
    parts.retained
        ? sql`select ${COLUMNS} from message_search s join ${parts.conversations} on conversation.id = s.conversation_id
              where ${sql.join(conditions, sql` and `)}`
        : sql`select ${COLUMNS} from message_search s where s.conversation_id = any(${[...q.conversationIds]}::uuid[]) and ${sql.join(conditions, sql` and `)}`;
  // Every sort key is descending, so "after the previous page" is one row comparison.
  const after = cursor?.kind === "scored" ? sql`(x.score, x.created_at, x.message_id) < ${scoredSql(cursor.after)}` : sql`true`;
  const rows = await sql<HitRow>`
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, ${CREATED_MS} as created_ms
    from (select c.*, ts_rank(c.tsv, ${parts.tsquery}) as score from (${candidates}) c) x
    where ${after}
    order by ${relevance ? sql`x.score desc, ` : sql``}x.created_at desc, x.message_id desc
    limit ${q.limit + 1}`.execute(db);
  const page = rows.rows.slice(0, q.limit);
  const last = page.at(-1);
  const next: Cursor | null =
    rows.rows.length > q.limit && last ? (relevance ? { kind: "scored", after: scoredKeyOf(last) } : { kind: "recent", after: sortKeyOf(last), inclusive: false }) : null;
  return { hits: page.map(toHit), next: next === null ? null : encodeCursor(next) };
}
