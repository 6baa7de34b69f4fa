/**
 * The SQL of edits and deletes: earlier versions, tombstones, the erasure that goes with them,
 * the unread counters a delete changes, and the moderation log.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, MessageEditsTable, ModerationLogTable } from "../db/schema.ts";
import type { contentColumns } from "./message-content.ts";
import { unreadByMember, type MessageRow } from "./message-repository.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type MessageEditRow = Selectable<MessageEditsTable>;
export type ModerationRow = Selectable<ModerationLogTable>;

/** Copies the message's current version into its history, as replaced now. */
export async function keepCurrentVersion(tx: Transaction<Database>, conversationId: string, seq: bigint, replacedAt: Date): Promise<void> {
  await sql`
    insert into message_edits (conversation_id, seq, version, body_text, envelope_ciphertext, envelope_nonce,
      envelope_algorithm, envelope_key_id, envelope_key_epoch, created_at, replaced_at)
    select conversation_id, seq, version, body_text, envelope_ciphertext, envelope_nonce,
      envelope_algorithm, envelope_key_id, envelope_key_epoch, coalesce(edited_at, created_at), ${replacedAt}
    from messages where conversation_id = ${conversationId} and seq = ${seq.toString()}`.execute(tx);
}

/** Writes the new content as the next version. */
export async function writeNextVersion(tx: Transaction<Database>, conversationId: string, seq: bigint, content: ReturnType<typeof contentColumns>, editedAt: Date) {
  await tx
    .updateTable("messages")
    .set((eb) => ({ ...content, version: eb("version", "+", 1), edited_at: editedAt }))
    .where("conversation_id", "=", conversationId)
    .where("seq", "=", seq.toString())
    .execute();
}

/** Earlier versions after `afterVersion`, oldest first. */
export async function listEdits(db: Db, conversationId: string, seq: bigint, afterVersion: number, limit: number): Promise<MessageEditRow[]> {
  return db
    .selectFrom("message_edits")
    .selectAll()
    .where("conversation_id", "=", conversationId)
    .where("seq", "=", seq.toString())
    .where("version", ">", afterVersion)
    .orderBy("version")
    .limit(limit)
    .execute();
}

/** Where a message stands: its conversation and seq (a decimal string, as int8 columns are). */
export interface MessageAt {
  conversation_id: string;
  seq: string;
}

/**
 * Takes messages that are about to be deleted out of the unread counters of the members who
 * had not read them (their mentions out of the mention counters), one statement for a batch.
 * Must run before the mentions are erased, under the conversations' locks.
 */
export async function uncountDeleted(tx: Transaction<Database>, messages: readonly MessageAt[]): Promise<void> {
  if (messages.length === 0) return;
  await sql`
    update conversation_members m set
      unread_count = m.unread_count - d.unread,
      unread_mention_count = m.unread_mention_count - d.mentions
    from ${unreadByMember(messages)} d
    where m.conversation_id = d.conversation_id and m.user_id = d.user_id`.execute(tx);
}

/** The messages at these positions as a set to join (for the batch statements below). */
function positions(at: readonly MessageAt[]) {
  return sql`unnest(${at.map((r) => r.conversation_id)}::uuid[], ${at.map((r) => r.seq)}::int8[]) as k(c, s)`;
}

/**
 * Turns the messages into tombstones and erases everything derived from their content: earlier
 * versions, mentions, reactions and their counts, blind-index tokens. Returns the tombstones.
 */
export async function eraseMessages(tx: Transaction<Database>, at: readonly MessageAt[], deletedBy: string, deletedAt: Date): Promise<MessageRow[]> {
  if (at.length === 0) return [];
  for (const table of ["message_edits", "message_reactions", "message_reaction_counts", "message_blind_tokens"] as const) {
    await sql`delete from ${sql.table(table)} t using ${positions(at)} where t.conversation_id = k.c and t.seq = k.s`.execute(tx);
  }
  const result = await sql<MessageRow>`
    update messages m set body_text = null, envelope_ciphertext = null, envelope_nonce = null, envelope_algorithm = null,
      envelope_key_id = null, envelope_key_epoch = null, mentioned_user_ids = '{}', mentions_everyone = false,
      deleted_by = ${deletedBy}, deleted_at = ${deletedAt}
    from ${positions(at)}
    where m.conversation_id = k.c and m.seq = k.s
    returning m.*`.execute(tx);
  return result.rows;
}

/**
 * The next messages of a sender that are not tombstones yet, in (conversation, seq) order
 * (index messages_live_by_sender): account erasure's batches.
 */
export async function findLiveMessagesOf(db: Db, senderId: string, limit: number): Promise<MessageAt[]> {
  return db
    .selectFrom("messages")
    .select(["conversation_id", "seq"])
    .where("sender_id", "=", senderId)
    .where("deleted_at", "is", null)
    .orderBy("conversation_id")
    .orderBy("seq")
    .limit(limit)
    .execute();
}

/** Locks those of the messages that are still not tombstones (the caller holds their conversations' locks). */
export async function lockLiveMessages(tx: Transaction<Database>, at: readonly MessageAt[]): Promise<MessageRow[]> {
  if (at.length === 0) return [];
  const result = await sql<MessageRow>`
    select m.* from messages m join ${positions(at)} on m.conversation_id = k.c and m.seq = k.s
    where m.deleted_at is null order by m.conversation_id, m.seq for update of m`.execute(tx);
  return result.rows;
}

export async function recordModeration(tx: Transaction<Database>, message: MessageRow): Promise<void> {
  await tx
    .insertInto("moderation_log")
    .values({
      conversation_id: message.conversation_id,
      message_seq: message.seq,
      message_id: message.id,
      sender_id: message.sender_id,
      deleted_by: message.deleted_by!,
      deleted_at: message.deleted_at!,
    })
    .onConflict((oc) => oc.columns(["conversation_id", "message_seq"]).doNothing())
    .execute();
}

export interface ModerationCursor {
  deletedUs: string;
  seq: string;
}

/** A group's moderations, newest first, after the cursor. */
export async function listModeration(db: Db, conversationId: string, limit: number, after: ModerationCursor | null) {
  const page = after
    ? sql`and ((extract(epoch from deleted_at) * 1000000)::int8, message_seq) < (${after.deletedUs}::int8, ${after.seq}::int8)`
    : sql``;
  const result = await sql<ModerationRow & { deleted_us: string }>`
    select *, (extract(epoch from deleted_at) * 1000000)::int8 as deleted_us from moderation_log
    where conversation_id = ${conversationId} ${page}
    order by deleted_us desc, message_seq desc limit ${limit}`.execute(db);
  return result.rows;
}
