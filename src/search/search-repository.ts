/**
 * The SQL SearchService needs beside the index: whose conversations may be searched, read when
 * the search runs, so leaving a group takes effect at once.
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";

/**
 * The caller's conversations, or those of `within` the caller is a member of; with
 * `blindSearch`, only those that have blind search.
 */
export async function findMemberConversationIds(
  db: Kysely<Database>,
  userId: string,
  within: readonly string[] | null,
  { blindSearch = false } = {},
): Promise<string[]> {
  if (within !== null && within.length === 0) return [];
  let query = db.selectFrom("conversation_members as m").select("m.conversation_id").where("m.user_id", "=", userId);
  if (within !== null) query = query.where("m.conversation_id", "in", [...within]);
  if (blindSearch) query = query.innerJoin("conversations as c", "c.id", "m.conversation_id").where("c.blind_search", "=", true);
  return (await query.execute()).map((r) => r.conversation_id);
}
