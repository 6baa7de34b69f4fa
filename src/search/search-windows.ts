/**
 * Broad queries (a word in a large share of all messages) without collecting every match:
 * the caller's messages are cut into recency windows, newest first. RELEVANCE ranks the
 * matches of each window on their own; RECENCY takes the newest matches of the newest windows.
 *
 * A window is every row whose sort key (created_at, message_id) lies in (lower, upper]. To
 * open the window below `upper` (the first one: no upper), each of the caller's conversations
 * is read newest first from `upper` down (index message_search_recent), at most M rows each,
 * whatever they hold; `lower` is the greatest M-th key among the conversations that gave M
 * rows (none did: no lower end). Every row in (lower, upper] was read: a conversation that
 * gave fewer than M gave all it has, and one that gave M has nothing unread above its M-th
 * key, which is at most `lower`. So the window's matches are exactly the matches in that key
 * range, however the conversations differ in activity, and opening one reads at most M rows
 * per conversation however rare the matches are (no plan depends on an estimate).
 *
 * The window's ranked pages are keyset pages by (score, created_at, message_id) inside the
 * fixed range, read again from the range on each page (so a delete or an edit between pages
 * cannot move the window); when a window runs out before the page is full, the next window
 * below `lower` fills it, up to a few windows per call (then the page ends short, with a
 * token). The windows tile the key range, so the pages together visit every match exactly
 * once.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { ScoredKey, SortKey, WindowCursor } from "./postgres-cursor.ts";
import { COLUMNS, CREATED_MS, keySql, scoredKeyOf, scoredSql, sortKeyOf, type HitRow, type QueryParts } from "./postgres-query.ts";

/** How many windows one call may open to fill its page (a window holds few matches of a rare phrase). */
const MAX_WINDOWS_PER_PAGE = 3;

const RANKED = sql`order by x.score desc, x.created_at desc, x.message_id desc`;
const NEWEST = sql`order by x.created_at desc, x.message_id desc`;

export interface WindowPage {
  readonly rows: readonly HitRow[];
  /** Where the next page starts; null after the last match. */
  readonly next: WindowCursor | null;
}

/** The page at `cursor`, reading at most `rowsPerConversation` rows of each conversation per window opened. */
export async function searchWindows(db: Kysely<Database>, parts: QueryParts, cursor: WindowCursor, rowsPerConversation: number, limit: number): Promise<WindowPage> {
  const rows: HitRow[] = [];
  let window = cursor;
  for (let opened = 0; ; ) {
    const wanted = limit - rows.length;
    let found: { rows: HitRow[]; lower: SortKey | null };
    if (window.range === null) {
      found = await openWindow(db, parts, window.upper && { key: window.upper, inclusive: true }, rowsPerConversation, wanted, "relevance");
      opened++;
    } else {
      found = { rows: await continueWindow(db, parts, window.upper, window.range.lower, window.range.after, wanted), lower: window.range.lower };
    }
    rows.push(...found.rows.slice(0, wanted));
    if (found.rows.length > wanted) return { rows, next: { kind: "window", upper: window.upper, range: { lower: found.lower, after: scoredKeyOf(rows.at(-1)!) } } };
    if (found.lower === null) return { rows, next: null };
    window = { kind: "window", upper: found.lower, range: null };
    if (rows.length === limit || opened === MAX_WINDOWS_PER_PAGE) return { rows, next: window };
  }
}

/**
 * RECENCY for a broad query: the newest matches below `after` are the newest of the window
 * below it (every row above the window's lower end was read), so a page is the window's
 * first matches, or, when a window holds too few, the next window's too (each reading twice
 * as many rows per conversation as the one before, up to a few windows per call). Each
 * conversation gives a few rows per window instead of a page's worth of matches.
 */
export async function searchRecentWindows(
  db: Kysely<Database>,
  parts: QueryParts,
  after: UpperBound | null,
  rowsPerConversation: number,
  limit: number,
): Promise<{ rows: HitRow[]; next: UpperBound | null }> {
  const rows: HitRow[] = [];
  let upper = after;
  for (let opened = 0, rowsEach = rowsPerConversation; opened < MAX_WINDOWS_PER_PAGE; opened++, rowsEach *= 2) {
    const wanted = limit - rows.length;
    const found = await openWindow(db, parts, upper, rowsEach, wanted, "recency");
    rows.push(...found.rows.slice(0, wanted));
    if (found.rows.length > wanted) return { rows, next: { key: sortKeyOf(rows.at(-1)!), inclusive: false } };
    if (found.lower === null) return { rows, next: null };
    upper = { key: found.lower, inclusive: true };
    if (rows.length === limit) break;
  }
  return { rows, next: upper };
}

/** Where a window starts: below a key, or at it. */
export interface UpperBound {
  readonly key: SortKey;
  readonly inclusive: boolean;
}

function belowSql(upper: UpperBound | null) {
  if (upper === null) return [];
  return [upper.inclusive ? sql`(s.created_at, s.message_id) <= ${keySql(upper.key)}` : sql`(s.created_at, s.message_id) < ${keySql(upper.key)}`];
}

/**
 * The first matches of the window below `upper`, ranked (RELEVANCE) or newest first
 * (RECENCY): `limit + 1` of them, to tell whether the window goes on, and its lower end.
 */
async function openWindow(
  db: Kysely<Database>,
  parts: QueryParts,
  upper: UpperBound | null,
  rowsPerConversation: number,
  limit: number,
  order: "relevance" | "recency",
): Promise<{ rows: HitRow[]; lower: SortKey | null }> {
  // Only conditions the index serves go into the walk: its limit counts rows read.
  const inTime = [...parts.inTime, ...belowSql(upper)];
  const result = await sql<HitRow & { lower_ms: string | null; lower_id: string | null }>`
    with walked as materialized (
      select c.* from ${parts.conversations} cross join lateral (
        select ${COLUMNS}, s.sender_id, row_number() over (order by s.created_at desc, s.message_id desc) as n
        from message_search s
        where s.conversation_id = conversation.id ${inTime.length > 0 ? sql`and ${sql.join(inTime, sql` and `)}` : sql``}
        order by s.created_at desc, s.message_id desc limit ${rowsPerConversation}) c
    ), bound as (
      select w.created_at, w.message_id from walked w where w.n = ${rowsPerConversation}
      order by w.created_at desc, w.message_id desc limit 1
    )
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, ${CREATED_MS} as created_ms,
           (extract(epoch from b.created_at) * 1000)::int8 as lower_ms, b.message_id as lower_id
    from bound b right join (
      select s.*, ts_rank(s.tsv, ${parts.tsquery}) as score from walked s where ${sql.join(parts.matching, sql` and `)}
    ) x on true
    where b.created_at is null or (x.created_at, x.message_id) > (b.created_at, b.message_id)
    ${order === "relevance" ? RANKED : NEWEST}
    limit ${limit + 1}`.execute(db);
  // No match in the window: its lower end still has to be known to go on below it.
  const first = result.rows[0];
  const lower = first ? keyOf(first.lower_ms, first.lower_id) : await lowerEnd(db, parts, upper, rowsPerConversation);
  return { rows: result.rows, lower };
}

/** The lower end of the window below `upper`, for a window without a match. */
async function lowerEnd(db: Kysely<Database>, parts: QueryParts, upper: UpperBound | null, rowsPerConversation: number): Promise<SortKey | null> {
  const inTime = [...parts.inTime, ...belowSql(upper)];
  const result = await sql<{ lower_ms: string; lower_id: string }>`
    select (extract(epoch from c.created_at) * 1000)::int8 as lower_ms, c.message_id as lower_id
    from ${parts.conversations} cross join lateral (
      select s.created_at, s.message_id from message_search s
      where s.conversation_id = conversation.id ${inTime.length > 0 ? sql`and ${sql.join(inTime, sql` and `)}` : sql``}
      order by s.created_at desc, s.message_id desc offset ${rowsPerConversation - 1} limit 1) c
    order by c.created_at desc, c.message_id desc limit 1`.execute(db);
  const row = result.rows[0];
  return row ? keyOf(row.lower_ms, row.lower_id) : null;
}

function keyOf(createdMs: string | null, messageId: string | null): SortKey | null {
  return createdMs === null || messageId === null ? null : { createdMs: Number(createdMs), messageId };
}

/** The window (lower, upper]'s next page after `after`; `limit + 1` rows. */
async function continueWindow(
  db: Kysely<Database>,
  parts: QueryParts,
  upper: SortKey | null,
  lower: SortKey | null,
  after: ScoredKey,
  limit: number,
): Promise<HitRow[]> {
  const inTime = [
    ...parts.inTime,
    ...(upper === null ? [] : [sql`(s.created_at, s.message_id) <= ${keySql(upper)}`]),
    ...(lower === null ? [] : [sql`(s.created_at, s.message_id) > ${keySql(lower)}`]),
  ];
  // The range is read through the index of each conversation's rows by time ("offset 0" keeps
  // the planner from trading it for the text index, whose matches span every conversation).
  const result = await sql<HitRow>`
    select x.conversation_id, x.seq, x.message_id, x.version, x.score, ${CREATED_MS} as created_ms
    from (
      select s.*, ts_rank(s.tsv, ${parts.tsquery}) as score from ${parts.conversations} cross join lateral (
        select ${COLUMNS}, s.sender_id from message_search s
        where s.conversation_id = conversation.id ${inTime.length > 0 ? sql`and ${sql.join(inTime, sql` and `)}` : sql``}
        offset 0) s
      where ${sql.join(parts.matching, sql` and `)}
    ) x
    where (x.score, x.created_at, x.message_id) < ${scoredSql(after)}
    ${RANKED}
    limit ${limit + 1}`.execute(db);
  return result.rows;
}
