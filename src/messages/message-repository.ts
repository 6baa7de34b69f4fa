/** Every SQL statement about messages. */
import { sql, type Insertable, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, MessagesTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type MessageRow = Selectable<MessagesTable>;
export type NewMessageRow = Insertable<MessagesTable>;

/** Locks the conversations (in id order, so concurrent batches never deadlock). */
export async function lockConversations(tx: Transaction<Database>, conversationIds: readonly string[]) {
  const rows = await sql<{ id: string; last_seq: string }>`
    select id, last_seq from conversations where id = any(${[...conversationIds].sort()}::uuid[])
    order by id for update`.execute(tx);
  return new Map(rows.rows.map((r) => [r.id, BigInt(r.last_seq)]));
}

/** Which (conversation, user) pairs are memberships. Keys are `${conversationId}/${userId}`. */
export async function findMemberships(db: Db, pairs: readonly { conversationId: string; userId: string }[]): Promise<Set<string>> {
  const rows = await sql<{ conversation_id: string; user_id: string }>`
    select m.conversation_id, m.user_id from conversation_members m
    join unnest(${pairs.map((p) => p.conversationId)}::uuid[], ${pairs.map((p) => p.userId)}::text[]) as k(c, u)
      on m.conversation_id = k.c and m.user_id = k.u`.execute(db);
  return new Set(rows.rows.map((r) => `${r.conversation_id}/${r.user_id}`));
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

export async function findMessage(db: Db, conversationId: string, seq: bigint): Promise<MessageRow | undefined> {
  return db
    .selectFrom("messages")
    .selectAll()
    .where("conversation_id", "=", conversationId)
    .where("seq", "=", seq.toString())
    .executeTakeFirst();
}

/** A page of history: seq below `from` descending, or above it ascending. */
export async function listMessages(db: Db, conversationId: string, direction: "backward" | "forward", from: bigint | null, limit: number) {
  let query = db.selectFrom("messages").selectAll().where("conversation_id", "=", conversationId);
  if (from !== null) query = query.where("seq", direction === "backward" ? "<" : ">", from.toString());
  return query.orderBy("seq", direction === "backward" ? "desc" : "asc").limit(limit).execute();
}
