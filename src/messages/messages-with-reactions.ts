/** Messages as one viewer sees them: each stored row with its reactions and "reacted by me". */
import type { Kysely } from "kysely";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { Database } from "../db/schema.ts";
import { toReactionSummaries } from "../reactions/reaction-mapper.ts";
import { findReactionSummaries, targetKey } from "../reactions/reaction-repository.ts";
import { toMessage } from "./message-mapper.ts";
import type { MessageWithReplyRow } from "./message-repository.ts";

/** The rows as messages, in the same order, with one query for all their reactions. */
export async function toMessagesWithReactions(db: Kysely<Database>, rows: readonly MessageWithReplyRow[], viewerId: string): Promise<Message[]> {
  const targets = rows.map((r) => ({ conversationId: r.conversation_id, seq: r.seq, userId: viewerId }));
  const reactions = toReactionSummaries(await findReactionSummaries(db, targets));
  return rows.map((row, i) => toMessage(row, reactions.get(targetKey(targets[i]!)) ?? []));
}
