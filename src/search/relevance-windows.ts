/**
 * RELEVANCE for a broad query without ranking every match: the matches are cut into recency
 * windows, newest first, and each window is ranked on its own.
 *
 * A window is every match whose sort key (created_at, message_id) lies in (lower, upper]. To
 * open the window below `upper` (the first one: no upper), each of the caller's conversations
 * is walked newest first from `upper` down (index message_search_recent), taking at most K
 * matches; `lower` is the greatest K-th key among the conversations that gave K (none did:
 * no lower end). Every match in (lower, upper] was read: a conversation that gave fewer than
 * K gave all it has, and one that gave K has nothing unread above its K-th key, which is at
 * most `lower`. So the window is exactly the matches in that key range, however the
 * conversations differ in activity, and it holds at least K - 1 of them.
 *
 * The window's ranked pages are keyset pages by (score, created_at, message_id) inside the
 * fixed range, read again from the range on each page (so a delete between pages cannot
 * move the window); when a window runs out the page ends, and the next token opens the
 * window below `lower`. The windows tile the key range, so the pages together visit every
 * match exactly once.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { ScoredKey, SortKey } from "./postgres-cursor.ts";
import { COLUMNS, CREATED_MS, keySql, scoredSql, type HitRow, type QueryParts } from "./postgres-query.ts";

const RANKED = sql`order by x.score desc, x.created_at desc, x.message_id desc`;

/**
 * The first page of the window below `upper` (inclusive), at most K matches read per
 * conversation; `limit + 1` rows, to tell whether the window goes on.
 */
export async function openWindow(
  db: Kysely<Database>,
  parts: QueryParts,
  upper: SortKey | null,
  perConversation: number,
  limit: number,
): Promise<{ rows: HitRow[]; lower: SortKey | null }> {
  const conditions = [...parts.conditions, ...(upper === null ? [] : [sql`(s.created_at, s.message_id) <= ${keySql(upper)}`])];
  const result = await sql<HitRow & { lower_ms: string | null; lower_id: string | null }>`
    with walked as materialized (
      select c.* from ${parts.conversations} cross join lateral (
        select ${COLUMNS}, row_number() over (order by s.created_at desc, s.message_id desc) as n
        from message_search s
        where s.conversation_id = conversation.id and ${sql.join(conditions, sql` and `)}
        order by s.created_at desc, s.message_id desc limit ${perConversation}) c
    ), bound as (
      select w.created_at, w.message_id from walked w where w.n = ${perConversation}
      order by w.created_at desc, w.message_id desc limit 1
    )
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, ${CREATED_MS} as created_ms,
           (extract(epoch from b.created_at) * 1000)::int8 as lower_ms, b.message_id as lower_id
    from (select w.*, ts_rank(w.tsv, ${parts.tsquery}) as score from walked w) x
    left join bound b on true
    where b.created_at is null or (x.created_at, x.message_id) > (b.created_at, b.message_id)
    ${RANKED}
    limit ${limit + 1}`.execute(db);
  const first = result.rows[0];
  const lower = first?.lower_id ? { createdMs: Number(first.lower_ms), messageId: first.lower_id } : null;
  return { rows: result.rows, lower };
}

/** The window (lower, upper]'s next page after `after`; `limit + 1` rows. */
export async function continueWindow(
  db: Kysely<Database>,
  parts: QueryParts,
  upper: SortKey | null,
  lower: SortKey | null,
  after: ScoredKey,
  limit: number,
): Promise<HitRow[]> {
  const conditions = [
    ...parts.conditions,
    ...(upper === null ? [] : [sql`(s.created_at, s.message_id) <= ${keySql(upper)}`]),
    ...(lower === null ? [] : [sql`(s.created_at, s.message_id) > ${keySql(lower)}`]),
  ];
  const result = await sql<HitRow>`
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, ${CREATED_MS} as created_ms
    from (
      select c.*, ts_rank(c.tsv, ${parts.tsquery}) as score from ${parts.conversations} cross join lateral (
        select ${COLUMNS} from message_search s
        where s.conversation_id = conversation.id and ${sql.join(conditions, sql` and `)}) c
    ) x
    where (x.score, x.created_at, x.message_id) < ${scoredSql(after)}
    ${RANKED}
    limit ${limit + 1}`.execute(db);
  return result.rows;
}
