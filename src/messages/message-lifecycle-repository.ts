/**
 * The SQL of edits and deletes: earlier versions, tombstones, the erasure that goes with them,
 * the unread counters a delete changes, and the moderation log.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, MessageEditsTable, ModerationLogTable } from "../db/schema.ts";
import type { contentColumns } from "./message-content.ts";
import type { MessageRow } from "./message-repository.ts";

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

/**
 * Takes a message that is about to be deleted out of the unread counters of the members who
 * had not read it (its mentions out of the mention counters). Must run before the mentions
 * are erased, under the conversation's lock.
 */
export async function uncountDeleted(tx: Transaction<Database>, message: MessageRow): Promise<void> {
  await sql`
    update conversation_members set
      unread_count = unread_count - 1,
      unread_mention_count = unread_mention_count
        - (case when ${message.mentions_everyone} or user_id = any(${message.mentioned_user_ids}::text[]) then 1 else 0 end)
    where conversation_id = ${message.conversation_id} and user_id <> ${message.sender_id}
      and last_read_seq < ${message.seq}`.execute(tx);
}

/**
 * Turns the message into a tombstone and erases everything derived from its content: earlier
 * versions, mentions, reactions and their counts.
 */
export async function eraseMessage(tx: Transaction<Database>, conversationId: string, seq: bigint, deletedBy: string, deletedAt: Date): Promise<MessageRow> {
  const at = { conversationId, seq: seq.toString() };
  await tx.deleteFrom("message_edits").where("conversation_id", "=", at.conversationId).where("seq", "=", at.seq).execute();
  await tx.deleteFrom("message_reactions").where("conversation_id", "=", at.conversationId).where("seq", "=", at.seq).execute();
  await tx.deleteFrom("message_reaction_counts").where("conversation_id", "=", at.conversationId).where("seq", "=", at.seq).execute();
  return tx
    .updateTable("messages")
    .set({
      body_text: null,
      envelope_ciphertext: null,
      envelope_nonce: null,
      envelope_algorithm: null,
      envelope_key_id: null,
      envelope_key_epoch: null,
      mentioned_user_ids: [],
      mentions_everyone: false,
      deleted_by: deletedBy,
      deleted_at: deletedAt,
    })
    .where("conversation_id", "=", at.conversationId)
    .where("seq", "=", at.seq)
    .returningAll()
    .executeTakeFirstOrThrow();
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
