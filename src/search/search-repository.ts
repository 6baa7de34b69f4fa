/**
 * The SQL SearchService needs beside the index: whose conversations may be searched (read when
 * the search runs, so leaving a group takes effect at once) and the current stored messages
 * behind the hits.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { MessageRow } from "../messages/message-repository.ts";

/** The caller's conversations, or those of `within` the caller is a member of. */
export async function findMemberConversationIds(db: Kysely<Database>, userId: string, within: readonly string[] | null): Promise<string[]> {
  let query = db.selectFrom("conversation_members").select("conversation_id").where("user_id", "=", userId);
  if (within !== null) query = query.where("conversation_id", "in", [...within]);
  return (await query.execute()).map((r) => r.conversation_id);
}

/** The stored messages at these positions (missing ones are left out). */
export async function findMessagesAt(db: Kysely<Database>, keys: readonly { conversationId: string; seq: bigint }[]): Promise<MessageRow[]> {
  if (keys.length === 0) return [];
  const result = await sql<MessageRow>`
    select m.* from messages m
    join unnest(${keys.map((k) => k.conversationId)}::uuid[], ${keys.map((k) => k.seq.toString())}::int8[]) as k(c, s)
      on m.conversation_id = k.c and m.seq = k.s`.execute(db);
  return result.rows;
}
