/**
 * The SQL of message retention: which conversations have a deadline (for reads across several
 * of them), and what the sweeper finds and deletes. Every statement is scoped by
 * conversation_id except the two that walk by age (messages_by_created_at and
 * media_attachments_by_age), which are local to each shard when the tables are distributed.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import type { ConversationRetention, RetentionCutoff } from "./retention-policy.ts";

type Db = Kysely<Database> | Transaction<Database>;

/**
 * The retention settings of those of the conversations that can have a deadline: all of them
 * when the deployment has a retention, else only those with one (or a floor) of their own.
 */
export async function findRetentionSettings(db: Db, conversationIds: readonly string[], deploymentRetains: boolean): Promise<Map<string, ConversationRetention>> {
  if (conversationIds.length === 0) return new Map();
  const own = deploymentRetains ? sql`` : sql`and (message_retention_seconds is not null or retention_floor is not null)`;
  const result = await sql<ConversationRetention & { id: string }>`
    select id, message_retention_seconds, retention_floor from conversations
    where id = any(${[...conversationIds]}::uuid[]) ${own}`.execute(db);
  return new Map(result.rows.map((row) => [row.id, row]));
}

/** The deadlines (non-null ones only) of these conversations at the cutoff. */
export function deadlinesAt(cutoff: RetentionCutoff, settings: ReadonlyMap<string, ConversationRetention>): Map<string, Date> {
  const deadlines = new Map<string, Date>();
  for (const [id, row] of settings) {
    const deadline = cutoff.deadline(row);
    if (deadline !== null) deadlines.set(id, deadline);
  }
  return deadlines;
}

/** Where a message stands: its conversation and seq. */
export interface MessageAt {
  conversation_id: string;
  seq: string;
}

/**
 * The next conversations (in id order, after `afterId`) with a retention or a floor of their
 * own, each with its deadline at the cutoff and whether its oldest message or attachment is
 * due: one probe of the first message by seq (created_at grows with seq) and one of the
 * attachment index.
 */
export async function findOwnRetentionConversations(db: Db, cutoff: RetentionCutoff, afterId: string | null, limit: number) {
  const after = afterId === null ? sql`` : sql`and c.id > ${afterId}::uuid`;
  const result = await sql<{ id: string; deadline: Date; own: string | null; floor: Date | null; messages_due: boolean; media_due: boolean }>`
    select x.id, x.deadline, x.own, x.floor,
      coalesce((select m.created_at <= x.deadline from messages m where m.conversation_id = x.id order by m.seq limit 1), false) as messages_due,
      exists (select 1 from media a where a.conversation_id = x.id and a.created_at <= x.deadline) as media_due
    from (
      select c.id, ${cutoff.deadlineSql("c")} as deadline, c.message_retention_seconds as own, c.retention_floor as floor
      from conversations c
      where (c.message_retention_seconds is not null or c.retention_floor is not null) ${after}
      order by c.id limit ${limit}
    ) x`.execute(db);
  return result.rows;
}

/**
 * Up to `limit` of the conversation's messages past the deadline, from its oldest: the first
 * `limit` by seq are read and those created at or before the deadline kept, so the probe is
 * bounded even when nothing is due.
 */
export async function findDueInConversation(db: Db, conversationId: string, deadline: Date, limit: number): Promise<MessageAt[]> {
  const result = await sql<MessageAt>`
    select conversation_id, seq from (
      select conversation_id, seq, created_at from messages where conversation_id = ${conversationId}::uuid order by seq limit ${limit}
    ) first where created_at <= ${deadline.toISOString()}::timestamptz`.execute(db);
  return result.rows;
}

/**
 * Up to `limit` messages of any conversation created at or before the deployment's deadline, in
 * no particular order: the BRIN index finds the block ranges that can hold them, and an order
 * would sort every due message for each batch.
 */
export async function findDueByAge(db: Db, deadline: Date, limit: number): Promise<MessageAt[]> {
  const result = await sql<MessageAt>`
    select conversation_id, seq from messages where created_at <= ${deadline.toISOString()}::timestamptz
    limit ${limit}`.execute(db);
  return result.rows;
}

/** A message the sweeper deleted, with what the search index needs to forget it. */
export interface PurgedMessage extends MessageAt {
  id: string;
  /** Plain text that was not deleted: it has an entry in the search index. */
  indexed: boolean;
}

/** Plain-text, not deleted messages among these (the ones the search index holds). */
export async function findIndexed(db: Db, at: readonly MessageAt[]): Promise<PurgedMessage[]> {
  if (at.length === 0) return [];
  const result = await sql<PurgedMessage>`
    select m.conversation_id, m.seq, m.id, true as indexed from messages m
    join unnest(${at.map((a) => a.conversation_id)}::uuid[], ${at.map((a) => a.seq)}::int8[]) as k(c, s)
      on m.conversation_id = k.c and m.seq = k.s
    where m.body_text is not null and m.deleted_at is null`.execute(db);
  return result.rows;
}

/** Takes the cluster-wide sweeper lock for the transaction, if no other node holds it. */
export async function tryLockSweep(tx: Transaction<Database>, lockId: number): Promise<boolean> {
  const result = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${lockId}::int8) as locked`.execute(tx);
  return result.rows[0]?.locked === true;
}

/** Locks the conversations (in id order, as sends do, so the two never deadlock). */
export async function lockConversationsInOrder(tx: Transaction<Database>, conversationIds: readonly string[]): Promise<void> {
  await sql`select id from conversations where id = any(${[...conversationIds].sort()}::uuid[]) order by id for update`.execute(tx);
}

/**
 * Deletes the messages that are (still) past their conversation's deadline at the cutoff, with
 * everything derived from them: earlier versions, reactions and their counts, blind-index
 * tokens and moderation-log entries; and takes them out of the unread counters of the members
 * who had not read them (as a delete does). The caller holds the conversations' locks. Returns
 * what was deleted.
 */
export async function purgeMessages(tx: Transaction<Database>, at: readonly MessageAt[], cutoff: RetentionCutoff): Promise<MessageAt[]> {
  if (at.length === 0) return [];
  const doomed = await sql<MessageAt>`
    select m.conversation_id, m.seq from messages m
    join unnest(${at.map((a) => a.conversation_id)}::uuid[], ${at.map((a) => a.seq)}::int8[]) as k(c, s)
      on m.conversation_id = k.c and m.seq = k.s
    join conversations c on c.id = m.conversation_id
    where not ${cutoff.retainedSql("m.created_at", "c")}
    for update of m`.execute(tx);
  const rows = doomed.rows;
  if (rows.length === 0) return [];
  const cs = rows.map((r) => r.conversation_id);
  const ss = rows.map((r) => r.seq);
  const keys = sql`unnest(${cs}::uuid[], ${ss}::int8[]) as k(c, s)`;
  await sql`delete from message_edits t using ${keys} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  await sql`delete from message_reactions t using ${keys} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  await sql`delete from message_reaction_counts t using ${keys} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  await sql`delete from message_blind_tokens t using ${keys} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  await sql`delete from moderation_log t using ${keys} where t.conversation_id = k.c and t.message_seq = k.s`.execute(tx);
  // Unread counters, before the rows go: a deleted message was taken out when it was deleted;
  // the others now, for the members who had not read them (the rule sends and deletes follow).
  await sql`
    update conversation_members mm set
      unread_count = greatest(mm.unread_count - d.unread, 0),
      unread_mention_count = greatest(mm.unread_mention_count - d.mentions, 0)
    from (
      select msg.conversation_id, m.user_id, count(*) as unread,
        count(*) filter (where msg.mentions_everyone or m.user_id = any(msg.mentioned_user_ids)) as mentions
      from ${keys}
      join messages msg on msg.conversation_id = k.c and msg.seq = k.s and msg.deleted_at is null
      join conversation_members m on m.conversation_id = msg.conversation_id and m.user_id <> msg.sender_id and m.last_read_seq < msg.seq
      group by msg.conversation_id, m.user_id
    ) d
    where mm.conversation_id = d.conversation_id and mm.user_id = d.user_id`.execute(tx);
  await sql`delete from messages t using ${keys} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  return rows.map((r) => ({ conversation_id: r.conversation_id, seq: r.seq }));
}

/** An encrypted attachment past retention. */
export interface AttachmentAt {
  id: string;
  conversation_id: string;
}

/**
 * Up to `limit` of the oldest encrypted attachments created at or before the deadline: of one
 * conversation (its own retention), or of any (the deployment's, when conversationId is null).
 */
export async function findDueAttachments(db: Db, conversationId: string | null, deadline: Date, limit: number): Promise<AttachmentAt[]> {
  return db
    .selectFrom("media")
    .select(["id", "conversation_id"])
    .where("conversation_id", conversationId === null ? "is not" : "=", conversationId)
    .where("created_at", "<=", deadline)
    .orderBy("created_at")
    .limit(limit)
    .execute() as Promise<AttachmentAt[]>;
}

/** Deletes the attachment rows that are (still) past their conversation's deadline at the cutoff; returns their ids. */
export async function deleteAttachments(db: Db, ids: readonly string[], cutoff: RetentionCutoff): Promise<string[]> {
  if (ids.length === 0) return [];
  const result = await sql<{ id: string }>`
    delete from media a using conversations c
    where a.id = any(${[...ids]}::uuid[]) and c.id = a.conversation_id and not ${cutoff.retainedSql("a.created_at", "c")}
    returning a.id`.execute(db);
  return result.rows.map((r) => r.id);
}

/**
 * Drops a floor that has done its work: the conversation has no retention of its own and
 * nothing created at or before the floor is left, so the sweeper stops walking it.
 */
export async function clearSpentFloor(db: Db, conversationId: string, floor: Date): Promise<void> {
  await sql`
    update conversations c set retention_floor = null
    where c.id = ${conversationId}::uuid and c.message_retention_seconds is null and c.retention_floor = ${floor.toISOString()}::timestamptz
      and not exists (select 1 from (select m.created_at from messages m where m.conversation_id = c.id order by m.seq limit 1) f
        where f.created_at <= c.retention_floor)
      and not exists (select 1 from media a where a.conversation_id = c.id and a.created_at <= c.retention_floor)`.execute(db);
}
