/**
 * The one rule blocks add to messaging: no DIRECT message between two users when either
 * blocked the other. The send path calls it inside its transaction; the error says only
 * that the conversation is unavailable, the same to both sides, so it never tells the
 * blocked user that they were blocked (and, unlike NOT_FOUND, does not contradict the
 * conversation they can still read).
 */
import { sql, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError } from "../errors.ts";

/** Of these conversations, the DIRECT ones whose two members have a block between them. */
export async function findBlockedDirectConversations(tx: Transaction<Database>, conversationIds: readonly string[]): Promise<Set<string>> {
  if (conversationIds.length === 0) return new Set();
  const result = await sql<{ conversation_id: string }>`
    select p.conversation_id from direct_pairs p
    where p.conversation_id = any(${[...conversationIds]}::uuid[])
      and exists (select 1 from blocks b
        where (b.blocker_id = p.user_low and b.blocked_id = p.user_high)
           or (b.blocker_id = p.user_high and b.blocked_id = p.user_low))`.execute(tx);
  return new Set(result.rows.map((r) => r.conversation_id));
}

/** What a send into such a conversation fails with. */
export function conversationUnavailable(): FailedPreconditionError {
  return new FailedPreconditionError("messages cannot be sent in this conversation", "CONVERSATION_UNAVAILABLE");
}
