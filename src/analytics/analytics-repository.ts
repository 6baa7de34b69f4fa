/**
 * Every SQL statement of analytics: the consumer's increments, the watermarks, the rebuild and
 * the reads. The consumer and the rebuild bucket with the same expression,
 * date_trunc(granularity, t, 'UTC') over the same timestamps, so their figures agree exactly:
 *
 * - messages: rows of `messages` by created_at (tombstones of deleted messages included);
 * - active members: distinct sender_id among them;
 * - reactions: rows of `message_reactions` by created_at (a reaction taken back, or erased with
 *   its message, no longer counts; the consumer keeps analytics_reaction_marks to know which
 *   bucket to take it back from);
 * - stories posted: rows of `stories` by created_at; views, reach and story reactions: rows of
 *   `story_views` (count, distinct viewer_id) and `story_reactions` of those stories, in the
 *   bucket of the story's created_at.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { AnalyticsGranularity, Database } from "../db/schema.ts";
import type { ReactionChange, StoryFigure } from "./analytics-events.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** Both bucket sizes: every change is counted in its hour and in its day. */
const UNITS = sql`(values ('hour'), ('day')) as u(granularity)`;
const bucketOf = (column: string) => sql`date_trunc(u.granularity, ${sql.ref(column)}, 'UTC')`;

/**
 * Runs `work` holding the watermarks exclusively (every consumer batch waits) on one
 * snapshot (REPEATABLE READ, taken after the lock): what a rebuild reads and the log heads it
 * sets the watermarks to are then the same moment of the database.
 */
export async function exclusively<T>(db: Kysely<Database>, work: (tx: Transaction<Database>) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (tx) => {
    await sql`set transaction isolation level repeatable read`.execute(tx);
    await sql`lock table analytics_watermarks in exclusive mode`.execute(tx);
    return work(tx);
  });
}

/** The event log each watermark belongs to (empty before the first start). */
export async function findWatermarkLogs(tx: Db): Promise<string[]> {
  const rows = await tx.selectFrom("analytics_watermarks").select("log_id").execute();
  return rows.map((row) => row.log_id);
}

/** Sets every watermark to its partition's head (as of the transaction's snapshot). */
export async function setWatermarksToHeads(tx: Db, logId: string): Promise<void> {
  await tx.deleteFrom("analytics_watermarks").execute();
  await sql`insert into analytics_watermarks (partition, position, log_id)
    select partition, position, ${logId} from event_log_partitions`.execute(tx);
}

/** Locks the watermarks of these partitions (in partition order, so batches never deadlock). */
export async function lockWatermarks(tx: Transaction<Database>, partitions: readonly number[]): Promise<Map<number, bigint>> {
  const rows = await tx
    .selectFrom("analytics_watermarks")
    .select(["partition", "position"])
    .where("partition", "in", [...partitions])
    .orderBy("partition")
    .forUpdate()
    .execute();
  return new Map(rows.map((row) => [Number(row.partition), BigInt(row.position)]));
}

export async function advanceWatermarks(tx: Transaction<Database>, through: ReadonlyMap<number, bigint>): Promise<void> {
  if (through.size === 0) return;
  const partitions = [...through.keys()];
  await sql`
    update analytics_watermarks w set position = t.position
    from unnest(${partitions}::int2[], ${partitions.map((p) => String(through.get(p)))}::int8[]) as t(partition, position)
    where w.partition = t.partition`.execute(tx);
}

/** Counts sent messages and their senders (a sender once per bucket). */
export async function addMessages(tx: Transaction<Database>, messages: readonly { conversationId: string; createdAt: Date; senderId: string }[]): Promise<void> {
  if (messages.length === 0) return;
  await sql`
    with keyed as (
      select m.conversation_id, u.granularity, ${bucketOf("m.created_at")} as bucket, m.sender_id
      from unnest(${messages.map((m) => m.conversationId)}::uuid[], ${messages.map((m) => m.createdAt.toISOString())}::timestamptz[],
        ${messages.map((m) => m.senderId)}::text[]) as m(conversation_id, created_at, sender_id)
      cross join ${UNITS}
    ), senders as (
      insert into analytics_conversation_senders (conversation_id, granularity, bucket, user_id)
      select distinct conversation_id, granularity, bucket, sender_id from keyed
      on conflict do nothing
      returning conversation_id, granularity, bucket
    ), fresh as (
      select conversation_id, granularity, bucket, count(*) as n from senders group by 1, 2, 3
    ), sent as (
      select conversation_id, granularity, bucket, count(*) as n from keyed group by 1, 2, 3
    )
    insert into analytics_conversation_buckets as b (conversation_id, granularity, bucket, messages, active_members)
    select s.conversation_id, s.granularity, s.bucket, s.n, coalesce(f.n, 0)
    from sent s left join fresh f using (conversation_id, granularity, bucket)
    on conflict (conversation_id, granularity, bucket) do update
      set messages = b.messages + excluded.messages, active_members = b.active_members + excluded.active_members`.execute(tx);
}

/**
 * Counts a reaction if it is there now, in the buckets of when it was added (its row's
 * created_at), once: an add delivered after the reaction was taken back (or re-added) finds
 * no row (or the new one), and the events that follow put the figure right.
 */
export async function addReaction(tx: Transaction<Database>, r: ReactionChange): Promise<void> {
  await sql`
    with marked as (
      insert into analytics_reaction_marks (conversation_id, seq, emoji, user_id, reacted_at)
      select conversation_id, seq, emoji, user_id, created_at from message_reactions
      where conversation_id = ${r.conversationId} and seq = ${String(r.seq)} and emoji = ${r.emoji} and user_id = ${r.userId}
      on conflict do nothing
      returning conversation_id, reacted_at
    )
    insert into analytics_conversation_buckets as b (conversation_id, granularity, bucket, reactions)
    select m.conversation_id, u.granularity, ${bucketOf("m.reacted_at")}, 1 from marked m cross join ${UNITS}
    on conflict (conversation_id, granularity, bucket) do update set reactions = b.reactions + 1`.execute(tx);
}

/**
 * Takes back the counted reactions of a message: one (emoji and user given: a removal), or
 * all of them (its deletion erased them), each from the buckets it was counted in.
 */
export async function takeBackReactions(tx: Transaction<Database>, conversationId: string, seq: bigint, one?: { emoji: string; userId: string }): Promise<void> {
  await sql`
    with gone as (
      delete from analytics_reaction_marks
      where conversation_id = ${conversationId} and seq = ${String(seq)}
        ${one ? sql`and emoji = ${one.emoji} and user_id = ${one.userId}` : sql``}
      returning conversation_id, reacted_at
    ), buckets as (
      select g.conversation_id, u.granularity, ${bucketOf("g.reacted_at")} as bucket, count(*) as n
      from gone g cross join ${UNITS} group by 1, 2, 3
    )
    update analytics_conversation_buckets b set reactions = b.reactions - buckets.n
    from buckets
    where b.conversation_id = buckets.conversation_id and b.granularity = buckets.granularity and b.bucket = buckets.bucket`.execute(tx);
}

/**
 * Counts story figures in the buckets of each story's posting: a posted story by the time the
 * event carries, a view or reaction by the story's row (one already deleted counts nothing:
 * its views and reactions are gone with it). A viewer reaches an author once per bucket.
 */
export async function addStoryFigures(tx: Transaction<Database>, figures: readonly StoryFigure[]): Promise<void> {
  if (figures.length === 0) return;
  await sql`
    with input as (
      select * from unnest(
        ${figures.map((f) => f.authorId)}::text[], ${figures.map((f) => f.storyId)}::uuid[],
        ${figures.map((f) => f.postedAt?.toISOString() ?? null)}::timestamptz[],
        ${figures.map((f) => f.posted)}::int8[], ${figures.map((f) => f.views)}::int8[], ${figures.map((f) => f.reactions)}::int8[],
        ${figures.map((f) => f.viewerId)}::text[]
      ) as i(author_id, story_id, posted_at, posted, views, reactions, viewer_id)
    ), keyed as (
      select i.author_id, u.granularity, ${bucketOf("s.at")} as bucket, i.posted, i.views, i.reactions, i.viewer_id
      from input i
      cross join lateral (select coalesce(i.posted_at, (select created_at from stories where id = i.story_id)) as at) s
      cross join ${UNITS}
      where s.at is not null
    ), viewers as (
      insert into analytics_story_viewers (author_id, granularity, bucket, viewer_id)
      select distinct author_id, granularity, bucket, viewer_id from keyed where viewer_id is not null
      on conflict do nothing
      returning author_id, granularity, bucket
    ), fresh as (
      select author_id, granularity, bucket, count(*) as n from viewers group by 1, 2, 3
    ), sums as (
      select author_id, granularity, bucket, sum(posted) as posted, sum(views) as views, sum(reactions) as reactions
      from keyed group by 1, 2, 3
    )
    insert into analytics_author_buckets as b (author_id, granularity, bucket, stories_posted, views, reach, reactions)
    select s.author_id, s.granularity, s.bucket, s.posted, s.views, coalesce(f.n, 0), s.reactions
    from sums s left join fresh f using (author_id, granularity, bucket)
    on conflict (author_id, granularity, bucket) do update
      set stories_posted = b.stories_posted + excluded.stories_posted, views = b.views + excluded.views,
        reach = b.reach + excluded.reach, reactions = b.reactions + excluded.reactions`.execute(tx);
}

/**
 * Recomputes every rollup from the raw tables (inside exclusively(), so on the snapshot the
 * watermarks are then set from); returns how many hourly rows it wrote.
 */
export async function recomputeAll(tx: Transaction<Database>): Promise<number> {
  for (const table of ["analytics_conversation_buckets", "analytics_conversation_senders", "analytics_reaction_marks", "analytics_author_buckets", "analytics_story_viewers"] as const) {
    await tx.deleteFrom(table).execute();
  }
  await sql`
    insert into analytics_conversation_senders (conversation_id, granularity, bucket, user_id)
    select distinct m.conversation_id, u.granularity, ${bucketOf("m.created_at")}, m.sender_id from messages m cross join ${UNITS}`.execute(tx);
  await sql`
    insert into analytics_reaction_marks (conversation_id, seq, emoji, user_id, reacted_at)
    select conversation_id, seq, emoji, user_id, created_at from message_reactions`.execute(tx);
  await sql`
    insert into analytics_conversation_buckets (conversation_id, granularity, bucket, messages, active_members, reactions)
    select conversation_id, granularity, bucket, sum(messages), sum(active_members), sum(reactions) from (
      select m.conversation_id, u.granularity, ${bucketOf("m.created_at")} as bucket, count(*) as messages, 0 as active_members, 0 as reactions
        from messages m cross join ${UNITS} group by 1, 2, 3
      union all
      select conversation_id, granularity, bucket, 0, count(*), 0 from analytics_conversation_senders group by 1, 2, 3
      union all
      select r.conversation_id, u.granularity, ${bucketOf("r.reacted_at")}, 0, 0, count(*)
        from analytics_reaction_marks r cross join ${UNITS} group by 1, 2, 3
    ) parts group by 1, 2, 3`.execute(tx);
  await sql`
    insert into analytics_story_viewers (author_id, granularity, bucket, viewer_id)
    select distinct s.author_id, u.granularity, ${bucketOf("s.created_at")}, v.viewer_id
    from story_views v join stories s on s.id = v.story_id cross join ${UNITS}`.execute(tx);
  await sql`
    insert into analytics_author_buckets (author_id, granularity, bucket, stories_posted, views, reach, reactions)
    select author_id, granularity, bucket, sum(posted), sum(views), sum(reach), sum(reactions) from (
      select s.author_id, u.granularity, ${bucketOf("s.created_at")} as bucket, count(*) as posted, 0 as views, 0 as reach, 0 as reactions
        from stories s cross join ${UNITS} group by 1, 2, 3
      union all
      select s.author_id, u.granularity, ${bucketOf("s.created_at")}, 0, count(*), 0, 0
        from story_views v join stories s on s.id = v.story_id cross join ${UNITS} group by 1, 2, 3
      union all
      select author_id, granularity, bucket, 0, 0, count(*), 0 from analytics_story_viewers group by 1, 2, 3
      union all
      select s.author_id, u.granularity, ${bucketOf("s.created_at")}, 0, 0, 0, count(*)
        from story_reactions r join stories s on s.id = r.story_id cross join ${UNITS} group by 1, 2, 3
    ) parts group by 1, 2, 3`.execute(tx);
  const counted = await sql<{ n: string }>`
    select (select count(*) from analytics_conversation_buckets where granularity = 'hour')
      + (select count(*) from analytics_author_buckets where granularity = 'hour') as n`.execute(tx);
  return Number(counted.rows[0]!.n);
}

/** Buckets whose start is in [from, to). */
export interface BucketRange {
  granularity: AnalyticsGranularity;
  from: Date;
  to: Date;
}

export interface ConversationBucketRow {
  bucket: Date;
  messages: string;
  active_members: string;
  reactions: string;
}

export async function findConversationBuckets(db: Db, conversationId: string, range: BucketRange): Promise<ConversationBucketRow[]> {
  return db
    .selectFrom("analytics_conversation_buckets")
    .select(["bucket", "messages", "active_members", "reactions"])
    .where("conversation_id", "=", conversationId)
    .where("granularity", "=", range.granularity)
    .where("bucket", ">=", range.from)
    .where("bucket", "<", range.to)
    .where((eb) => eb.or([eb("messages", "<>", "0"), eb("active_members", "<>", "0"), eb("reactions", "<>", "0")]))
    .orderBy("bucket")
    .execute();
}

export interface AuthorBucketRow {
  bucket: Date;
  stories_posted: string;
  views: string;
  reach: string;
  reactions: string;
}

export async function findAuthorBuckets(db: Db, authorId: string, range: BucketRange): Promise<AuthorBucketRow[]> {
  return db
    .selectFrom("analytics_author_buckets")
    .select(["bucket", "stories_posted", "views", "reach", "reactions"])
    .where("author_id", "=", authorId)
    .where("granularity", "=", range.granularity)
    .where("bucket", ">=", range.from)
    .where("bucket", "<", range.to)
    .where((eb) => eb.or([eb("stories_posted", "<>", "0"), eb("views", "<>", "0"), eb("reach", "<>", "0"), eb("reactions", "<>", "0")]))
    .orderBy("bucket")
    .execute();
}

export interface DeploymentBucketRow {
  bucket: Date;
  messages: string;
  active_users: string;
  reactions: string;
  stories_posted: string;
  story_views: string;
}

/** The deployment's figures: sums over conversations and authors, distinct senders across conversations. */
export async function findDeploymentBuckets(db: Db, range: BucketRange): Promise<DeploymentBucketRow[]> {
  const inRange = (alias: string) =>
    sql`${sql.ref(`${alias}.granularity`)} = ${range.granularity} and ${sql.ref(`${alias}.bucket`)} >= ${range.from.toISOString()}::timestamptz
      and ${sql.ref(`${alias}.bucket`)} < ${range.to.toISOString()}::timestamptz`;
  const result = await sql<DeploymentBucketRow>`
    with c as (
      select b.bucket, sum(b.messages) as messages, sum(b.reactions) as reactions from analytics_conversation_buckets b where ${inRange("b")} group by 1
    ), u as (
      select s.bucket, count(distinct s.user_id) as active_users from analytics_conversation_senders s where ${inRange("s")} group by 1
    ), a as (
      select b.bucket, sum(b.stories_posted) as stories_posted, sum(b.views) as story_views from analytics_author_buckets b where ${inRange("b")} group by 1
    )
    select k.bucket, coalesce(c.messages, 0)::text as messages, coalesce(u.active_users, 0)::text as active_users,
      coalesce(c.reactions, 0)::text as reactions, coalesce(a.stories_posted, 0)::text as stories_posted, coalesce(a.story_views, 0)::text as story_views
    from (select bucket from c union select bucket from a) k
    left join c on c.bucket = k.bucket left join u on u.bucket = k.bucket left join a on a.bucket = k.bucket
    where coalesce(c.messages, 0) <> 0 or coalesce(c.reactions, 0) <> 0 or coalesce(a.stories_posted, 0) <> 0 or coalesce(a.story_views, 0) <> 0
    order by k.bucket`.execute(db);
  return result.rows;
}

/** Whether the conversation exists (an operator may ask about any). */
export async function conversationExists(db: Db, conversationId: string): Promise<boolean> {
  return (await db.selectFrom("conversations").select("id").where("id", "=", conversationId).executeTakeFirst()) !== undefined;
}
