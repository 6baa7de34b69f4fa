/** Every SQL statement about messages. */
import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, MessagesTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type MessageRow = Selectable<MessagesTable>;
export type NewMessageRow = Insertable<MessagesTable>;

/** A locked conversation: its kind and newest seq. */
export interface LockedConversation {
  type: number;
  lastSeq: bigint;
}

/** Locks the conversations (in id order, so concurrent batches never deadlock). */
export async function lockConversations(tx: Transaction<Database>, conversationIds: readonly string[]): Promise<Map<string, LockedConversation>> {
  const rows = await sql<{ id: string; type: number; last_seq: string }>`
    select id, type, last_seq from conversations where id = any(${[...conversationIds].sort()}::uuid[])
    order by id for update`.execute(tx);
  return new Map(rows.rows.map((r) => [r.id, { type: r.type, lastSeq: BigInt(r.last_seq) }]));
}

/** The role of each (conversation, user) pair that is a membership. Keys are `${conversationId}/${userId}`. */
export async function findRoles(db: Db, pairs: readonly { conversationId: string; userId: string }[]): Promise<Map<string, number>> {
  const rows = await sql<{ conversation_id: string; user_id: string; role: number }>`
    select m.conversation_id, m.user_id, m.role from conversation_members m
    join unnest(${pairs.map((p) => p.conversationId)}::uuid[], ${pairs.map((p) => p.userId)}::text[]) as k(c, u)
      on m.conversation_id = k.c and m.user_id = k.u`.execute(db);
  return new Map(rows.rows.map((r) => [`${r.conversation_id}/${r.user_id}`, r.role]));
}

export interface IdempotencyKey {
  conversationId: string;
  senderId: string;
  clientMessageId: string;
}

/** Messages already stored under these idempotency keys. */
export async function findByIdempotencyKeys(db: Db, keys: readonly IdempotencyKey[]): Promise<MessageRow[]> {
  const result = await sql<MessageRow>`
    select m.* from messages m
    join unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.senderId)}::text[],
                ${keys.map((k) => k.clientMessageId)}::text[]) as k(c, s, i)
      on m.conversation_id = k.c and m.sender_id = k.s and m.client_message_id = k.i`.execute(db);
  return result.rows;
}

/** Moves each conversation's last_seq to the given value and marks the activity. */
export async function setLastSeqs(tx: Transaction<Database>, lastSeqs: ReadonlyMap<string, bigint>): Promise<void> {
  const ids = [...lastSeqs.keys()];
  await sql`
    update conversations c set last_seq = v.last_seq, last_activity_at = now()
    from unnest(${ids}::uuid[], ${ids.map((id) => lastSeqs.get(id)!.toString())}::int8[]) as v(id, last_seq)
    where c.id = v.id`.execute(tx);
}

export async function insertMessages(tx: Transaction<Database>, rows: readonly NewMessageRow[]): Promise<MessageRow[]> {
  return tx.insertInto("messages").values([...rows]).returningAll().execute();
}

/**
 * Adds the new messages to the other members' unread counters, in one statement for the whole
 * batch. Runs under the conversations' locks, which every other counter change also takes.
 */
export async function countAsUnread(tx: Transaction<Database>, messages: readonly { conversation_id: string; seq: string }[]): Promise<void> {
  await sql`
    update conversation_members m set
      unread_count = m.unread_count + d.unread,
      unread_mention_count = m.unread_mention_count + d.mentions
    from (
      select mm.conversation_id, mm.user_id, count(*) as unread,
        count(*) filter (where msg.mentions_everyone or mm.user_id = any(msg.mentioned_user_ids)) as mentions
      from unnest(${messages.map((r) => r.conversation_id)}::uuid[], ${messages.map((r) => r.seq)}::int8[]) as k(c, s)
      join messages msg on msg.conversation_id = k.c and msg.seq = k.s
      join conversation_members mm on mm.conversation_id = msg.conversation_id
        and mm.user_id <> msg.sender_id and mm.last_read_seq < msg.seq
      group by mm.conversation_id, mm.user_id
    ) d
    where m.conversation_id = d.conversation_id and m.user_id = d.user_id`.execute(tx);
}

/** What a read shows of the message a reply quotes. */
export interface ReplyPreviewColumns {
  reply_sender_id: string | null;
  reply_created_at: Date | null;
  reply_text: string | null;
  reply_encrypted: boolean | null;
  reply_deleted: boolean | null;
}

export type MessageWithReplyRow = MessageRow & ReplyPreviewColumns;

/** Longest preview (last message, reply quote, notification), in characters. */
export const PREVIEW_CHARS = 100;

/**
 * The columns a MessagePreview is made of, from the messages row aliased `alias`, named
 * `<prefix>_sender_id`, `_created_at`, `_text`, `_encrypted`, `_deleted` (for raw queries;
 * both names are constants of the caller, never input).
 */
export function previewColumns(alias: string, prefix: string) {
  const [a, p] = [sql.raw(alias), sql.raw(prefix)];
  return sql`${a}.sender_id as ${p}_sender_id, ${a}.created_at as ${p}_created_at,
    left(${a}.body_text, ${PREVIEW_CHARS}) as ${p}_text, (${a}.envelope_ciphertext is not null) as ${p}_encrypted,
    (${a}.deleted_at is not null) as ${p}_deleted`;
}

/** Messages joined with the message each one replies to, for reads. */
function selectWithReply(db: Db) {
  return db
    .selectFrom("messages as m")
    .leftJoin("messages as r", (join) => join.onRef("r.conversation_id", "=", "m.conversation_id").onRef("r.seq", "=", "m.reply_to_seq"))
    .selectAll("m")
    .select([
      "r.sender_id as reply_sender_id",
      "r.created_at as reply_created_at",
      sql<string | null>`left(r.body_text, ${PREVIEW_CHARS})`.as("reply_text"),
      sql<boolean | null>`r.envelope_ciphertext is not null`.as("reply_encrypted"),
      sql<boolean | null>`r.deleted_at is not null`.as("reply_deleted"),
    ]);
}

export async function findMessage(db: Db, conversationId: string, seq: bigint): Promise<MessageWithReplyRow | undefined> {
  return selectWithReply(db).where("m.conversation_id", "=", conversationId).where("m.seq", "=", seq.toString()).executeTakeFirst();
}

/** The messages at these positions, with their reply previews (for a batch just inserted). */
export async function findMessagesWithReply(db: Db, at: readonly { conversation_id: string; seq: string }[]): Promise<MessageWithReplyRow[]> {
  if (at.length === 0) return [];
  return selectWithReply(db)
    .where(sql<boolean>`(m.conversation_id, m.seq) in (select * from unnest(${at.map((r) => r.conversation_id)}::uuid[], ${at.map((r) => r.seq)}::int8[]))`)
    .execute();
}

/** A page of history: seq below `from` descending, or above it ascending. */
export async function listMessages(db: Db, conversationId: string, direction: "backward" | "forward", from: bigint | null, limit: number) {
  let query = selectWithReply(db).where("m.conversation_id", "=", conversationId);
  if (from !== null) query = query.where("m.seq", direction === "backward" ? "<" : ">", from.toString());
  return query.orderBy("m.seq", direction === "backward" ? "desc" : "asc").limit(limit).execute();
}

/** Locks one message for an edit or a delete. */
export async function lockMessage(tx: Transaction<Database>, conversationId: string, seq: bigint): Promise<MessageRow | undefined> {
  return tx
    .selectFrom("messages")
    .selectAll()
    .where("conversation_id", "=", conversationId)
    .where("seq", "=", seq.toString())
    .forUpdate()
    .executeTakeFirst();
}
