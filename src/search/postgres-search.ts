/**
 * The PostgreSQL full-text backend: table message_search (migrations/0005_search.sql), a GIN
 * index over tsvectors of the normalized words, and queries built from the parsed query with
 * phraseto_tsquery over bind parameters (never to_tsquery on user text). Relevance is ts_rank,
 * then recency. Used when OPENSEARCH_URL is unset.
 */
import { sql, type Kysely, type RawBuilder } from "kysely";
import type { Database } from "../db/schema.ts";
import { InvalidInputError } from "../errors.ts";
import type { ParsedQuery, SearchTerm } from "./query-parser.ts";
import { collapseChanges, type IndexChanges, type IndexedMessage, type IndexHit, type IndexPage, type IndexQuery, type IndexRebuild, type RemovedMessage, type SearchAfter, type SearchIndex } from "./search-index.ts";
import { createLexemeStats, type LexemeStats } from "./lexeme-stats.ts";
import { indexableText } from "./text-analysis.ts";

/** The text search configuration: no stemming or stop words, so exact words always match. */
const CONFIG = sql.lit("simple");
/** Stored times lie between years 1 and 9999; this bounds a page token's time so PostgreSQL can read it. */
const YEAR_1_MS = -62_135_596_800_000;
const YEAR_10000_MS = 253_402_300_800_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function createPostgresSearch(db: Kysely<Database>): SearchIndex {
  const stats = createLexemeStats(db);
  return {
    backend: "postgres",
    apply: (changes) => applyChanges(db, changes, "newer"),
    search: (query) => search(db, stats, query),
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

interface HitRow {
  conversation_id: string;
  seq: string;
  message_id: string;
  version: number;
  created_ms: string;
  score: number;
}

/** A query whose words are in at least this share of all messages is broad. */
const BROAD_SHARE = 0.02;

/**
 * Two plans. Normally the matches come from the GIN index and are all ranked. A broad query
 * in RECENCY order (a very common word: tens of thousands of matches) instead walks each of
 * the caller's conversations newest first (index message_search_recent) and stops after a
 * page's worth of matches in each, which gives exactly the newest matches. RELEVANCE must see
 * every match to rank it, so it always takes the first plan.
 */
async function search(db: Kysely<Database>, stats: LexemeStats, q: IndexQuery): Promise<IndexPage> {
  const tsquery = toTsquery(q.query);
  const conditions: RawBuilder<unknown>[] = [sql`s.tsv @@ ${tsquery}`];
  if (q.senderId !== null) conditions.push(sql`s.sender_id = ${q.senderId}`);
  if (q.createdFromMs !== null) conditions.push(sql`s.created_at >= ${new Date(q.createdFromMs).toISOString()}::timestamptz`);
  if (q.createdBeforeMs !== null) conditions.push(sql`s.created_at < ${new Date(q.createdBeforeMs).toISOString()}::timestamptz`);
  const relevance = q.order === "relevance";
  const afterKey = q.after === null ? null : afterValues(q.after, relevance);
  if (!relevance && afterKey !== null) conditions.push(sql`(s.created_at, s.message_id) < (${sql.join(afterKey)})`);
  const columns = sql`s.conversation_id, s.seq, s.message_id, s.version, s.created_at, s.tsv`;
  // A sender filter is not in that index: walking newest first could read a whole conversation.
  const newestFirst = !relevance && q.senderId === null && (await stats.shareOf(q.query)) >= BROAD_SHARE;
  // Retention: each conversation's deadline beside its id (null: none); with none anywhere the
  // queries stay as they were.
  const deadlines = q.retainedAfterMs ?? new Map<string, number>();
  const retained = deadlines.size > 0;
  const conversations = sql`unnest(${[...q.conversationIds]}::uuid[], ${q.conversationIds.map((id) => {
    const deadline = deadlines.get(id);
    return deadline === undefined ? null : new Date(deadline).toISOString();
  })}::timestamptz[]) as conversation(id, deadline)`;
  const keep = sql`s.created_at > coalesce(conversation.deadline, '-infinity'::timestamptz)`;
  const candidates = newestFirst
    ? sql`
        select c.* from ${conversations} cross join lateral (
          select ${columns} from message_search s
          where s.conversation_id = conversation.id and ${sql.join(conditions, sql` and `)} ${retained ? sql`and ${keep}` : sql``}
          order by s.created_at desc, s.message_id desc limit ${q.limit + 1}) c`
    : retained
      ? sql`select ${columns} from message_search s join ${conversations} on conversation.id = s.conversation_id
            where ${sql.join(conditions, sql` and `)} and ${keep}`
      : sql`select ${columns} from message_search s where s.conversation_id = any(${[...q.conversationIds]}::uuid[]) and ${sql.join(conditions, sql` and `)}`;
  // Every sort key is descending, so "after the previous page" is one row comparison.
  const after = relevance && afterKey !== null ? sql`(x.score, x.created_at, x.message_id) < (${sql.join(afterKey)})` : sql`true`;
  const rows = await sql<HitRow>`
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, (extract(epoch from x.created_at) * 1000)::int8 as created_ms
    from (select c.conversation_id, c.seq, c.message_id, c.version, c.created_at, ts_rank(c.tsv, ${tsquery}) as score from (${candidates}) c) x
    where ${after}
    order by ${relevance ? sql`x.score desc, ` : sql``}x.created_at desc, x.message_id desc
    limit ${q.limit + 1}`.execute(db);
  const page = rows.rows.slice(0, q.limit);
  const last = page.at(-1);
  const hits = page.map(
    (r): IndexHit => ({ conversationId: r.conversation_id, seq: BigInt(r.seq), messageId: r.message_id, version: r.version, score: Number(r.score) }),
  );
  const next = rows.rows.length > q.limit && last ? (relevance ? [Number(last.score), last.created_ms, last.message_id] : [last.created_ms, last.message_id]) : null;
  return { hits, next };
}

/** The previous page's last sort key as typed parameters; anything else is a forged token. */
function afterValues(after: SearchAfter, relevance: boolean): RawBuilder<unknown>[] {
  const [score, createdMs, messageId] = relevance ? after : [0, ...after];
  const valid =
    after.length === (relevance ? 3 : 2) &&
    typeof score === "number" &&
    Number.isFinite(score) &&
    /^-?\d{1,15}$/.test(String(createdMs)) &&
    Number(createdMs) >= YEAR_1_MS &&
    Number(createdMs) < YEAR_10000_MS &&
    typeof messageId === "string" &&
    UUID.test(messageId);
  if (!valid) throw new InvalidInputError("page_token", "is not a token this call issued");
  const createdAt = new Date(Number(createdMs));
  return [...(relevance ? [sql`${score}::real`] : []), sql`${createdAt.toISOString()}::timestamptz`, sql`${messageId}::uuid`];
}

/** All included terms and none of the excluded ones; each term is a phrase of its normalized words. */
function toTsquery(query: ParsedQuery): RawBuilder<unknown> {
  const phrase = (term: SearchTerm) => sql`phraseto_tsquery(${CONFIG}, ${term.words.join(" ")})`;
  const parts = [...query.include.map(phrase), ...query.exclude.map((term) => sql`(!! ${phrase(term)})`)];
  return sql`(${sql.join(parts, sql` && `)})`;
}
