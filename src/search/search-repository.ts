/**
 * The SQL SearchService needs beside the index: whose conversations may be searched, read when
 * the search runs, so leaving a group takes effect at once.
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";

/** The caller's conversations, or those of `within` the caller is a member of. */
export async function findMemberConversationIds(db: Kysely<Database>, userId: string, within: readonly string[] | null): Promise<string[]> {
  let query = db.selectFrom("conversation_members").select("conversation_id").where("user_id", "=", userId);
  if (within !== null) query = query.where("conversation_id", "in", [...within]);
  return (await query.execute()).map((r) => r.conversation_id);
}

/** Of these conversations, those the caller is a member of that have blind search. */
export async function findBlindSearchConversationIds(db: Kysely<Database>, userId: string, within: readonly string[]): Promise<string[]> {
  if (within.length === 0) return [];
  const rows = await db
    .selectFrom("conversation_members as m")
    .innerJoin("conversations as c", "c.id", "m.conversation_id")
    .select("m.conversation_id")
    .where("m.user_id", "=", userId)
    .where("m.conversation_id", "in", [...within])
    .where("c.blind_search", "=", true)
    .execute();
  return rows.map((r) => r.conversation_id);
}
