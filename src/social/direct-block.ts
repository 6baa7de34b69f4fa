/**
 * The one rule blocks add to messaging: no DIRECT message between two users when either
 * blocked the other. The send path calls it inside its transaction; the error says only
 * that the conversation is unavailable, the same to both sides, so it never tells the
 * blocked user that they were blocked (and, unlike NOT_FOUND, does not contradict the
 * conversation they can still read).
 */
import { sql, type RawBuilder } from "kysely";
import { FailedPreconditionError } from "../errors.ts";

/**
 * Of these conversations, the DIRECT ones whose two members have a block between them: a
 * query returning `conversation_id`, for the send path to fold into its own lookups.
 */
export function blockedDirectConversations(conversationIds: readonly string[]): RawBuilder<{ conversation_id: string }> {
  return sql<{ conversation_id: string }>`
    select p.conversation_id from direct_pairs p
    where p.conversation_id = any(${[...conversationIds]}::uuid[])
      and exists (select 1 from blocks b
        where (b.blocker_id = p.user_low and b.blocked_id = p.user_high)
           or (b.blocker_id = p.user_high and b.blocked_id = p.user_low))`;
}

/** What a send into such a conversation fails with. */
export function conversationUnavailable(): FailedPreconditionError {
  return new FailedPreconditionError("messages cannot be sent in this conversation", "CONVERSATION_UNAVAILABLE");
}
