/** Reaction rows to protobuf ReactionSummary lists. */
import { create } from "@bufbuild/protobuf";
import { ReactionSummarySchema, type ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import { targetKey, type ReactionSummaryRow } from "./reaction-repository.ts";

/**
 * Groups summary rows by viewer of a message (targetKey: conversation/seq/user), keeping the
 * repository's order (most used first). A message with no reactions has no entry.
 */
export function toReactionSummaries(rows: readonly ReactionSummaryRow[]): Map<string, ReactionSummary[]> {
  const byTarget = new Map<string, ReactionSummary[]>();
  for (const row of rows) {
    const key = targetKey({ conversationId: row.conversation_id, seq: row.seq, userId: row.user_id });
    let list = byTarget.get(key);
    if (!list) byTarget.set(key, (list = []));
    list.push(create(ReactionSummarySchema, { emoji: row.emoji, count: BigInt(row.count), reactedByMe: row.reacted_by_me }));
  }
  return byTarget;
}

/** Reactions read with their message ([emoji, count, reacted by the reader], in order), as ReactionSummary messages. */
export function toReactionList(entries: readonly (readonly [string, string, boolean])[] | null): ReactionSummary[] {
  return entries === null ? [] : entries.map(([emoji, count, reactedByMe]) => create(ReactionSummarySchema, { emoji, count: BigInt(count), reactedByMe }));
}
