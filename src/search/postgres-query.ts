/**
 * The pieces every PostgreSQL search plan shares: the tsquery, the filters, the caller's
 * conversations with their retention deadlines, and the conversions between result rows,
 * hits and sort keys.
 */
import { sql, type RawBuilder } from "kysely";
import type { ScoredKey, SortKey } from "./postgres-cursor.ts";
import type { ParsedQuery, SearchTerm } from "./query-parser.ts";
import type { IndexHit, IndexQuery } from "./search-index.ts";

/** The text search configuration: no stemming or stop words, so exact words always match. */
const CONFIG = sql.lit("simple");

/** What a plan reads of each candidate row. */
export const COLUMNS = sql`s.conversation_id, s.seq, s.message_id, s.version, s.created_at, s.tsv`;
/** created_at (millisecond precision) as milliseconds since the epoch. */
export const CREATED_MS = sql`(extract(epoch from x.created_at) * 1000)::int8`;

export interface HitRow {
  conversation_id: string;
  seq: string;
  message_id: string;
  version: number;
  created_ms: string;
  score: number;
}

export interface QueryParts {
  readonly tsquery: RawBuilder<unknown>;
  /** Everything a row must satisfy, over `message_search s` (and `conversation` when retained). */
  readonly conditions: readonly RawBuilder<unknown>[];
  /** Of those, the ones on the text and the sender (no index of a conversation's rows by time holds them). */
  readonly matching: readonly RawBuilder<unknown>[];
  /** The others: bounds on created_at, which that index serves. */
  readonly inTime: readonly RawBuilder<unknown>[];
  /** The caller's conversations as `conversation(id, deadline)`. */
  readonly conversations: RawBuilder<unknown>;
  /** Whether any conversation has a retention deadline. */
  readonly retained: boolean;
}

export function queryParts(q: IndexQuery): QueryParts {
  const tsquery = toTsquery(q.query);
  const matching: RawBuilder<unknown>[] = [sql`s.tsv @@ ${tsquery}`];
  if (q.senderId !== null) matching.push(sql`s.sender_id = ${q.senderId}`);
  const inTime: RawBuilder<unknown>[] = [];
  if (q.createdFromMs !== null) inTime.push(sql`s.created_at >= ${new Date(q.createdFromMs).toISOString()}::timestamptz`);
  if (q.createdBeforeMs !== null) inTime.push(sql`s.created_at < ${new Date(q.createdBeforeMs).toISOString()}::timestamptz`);
  // Retention: each conversation's deadline beside its id (null: none); with none anywhere the
  // queries stay as they were.
  const deadlines = q.retainedAfterMs ?? new Map<string, number>();
  const retained = deadlines.size > 0;
  if (retained) inTime.push(sql`s.created_at > coalesce(conversation.deadline, '-infinity'::timestamptz)`);
  const conversations = sql`unnest(${[...q.conversationIds]}::uuid[], ${q.conversationIds.map((id) => {
    const deadline = deadlines.get(id);
    return deadline === undefined ? null : new Date(deadline).toISOString();
  })}::timestamptz[]) as conversation(id, deadline)`;
  return { tsquery, conditions: [...matching, ...inTime], matching, inTime, conversations, retained };
}

/** All included terms and none of the excluded ones; each term is a phrase of its normalized words. */
function toTsquery(query: ParsedQuery): RawBuilder<unknown> {
  const phrase = (term: SearchTerm) => sql`phraseto_tsquery(${CONFIG}, ${term.words.join(" ")})`;
  const parts = [...query.include.map(phrase), ...query.exclude.map((term) => sql`(!! ${phrase(term)})`)];
  return sql`(${sql.join(parts, sql` && `)})`;
}

/** A sort key as a row value to compare (created_at, message_id) with. */
export function keySql(key: SortKey): RawBuilder<unknown> {
  return sql`(${new Date(key.createdMs).toISOString()}::timestamptz, ${key.messageId}::uuid)`;
}

/** A scored key as a row value to compare (score, created_at, message_id) with. */
export function scoredSql(key: ScoredKey): RawBuilder<unknown> {
  return sql`(${key.score}::real, ${new Date(key.createdMs).toISOString()}::timestamptz, ${key.messageId}::uuid)`;
}

export function sortKeyOf(row: HitRow): SortKey {
  return { createdMs: Number(row.created_ms), messageId: row.message_id };
}

export function scoredKeyOf(row: HitRow): ScoredKey {
  return { score: Number(row.score), ...sortKeyOf(row) };
}

export function toHit(row: HitRow): IndexHit {
  return { conversationId: row.conversation_id, seq: BigInt(row.seq), messageId: row.message_id, version: row.version, score: Number(row.score) };
}
