/**
 * Takes back all of one user's reactions to messages (account erasure), a batch per
 * transaction: the reactions go, each count drops by one, and each member sees a
 * reaction_removed event with the count after it, exactly as if the user had removed them.
 */
import { create } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { ReactionRemovedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import { writeWithEvents, type EventPublisher } from "../log/event-publisher.ts";
import * as repo from "./reaction-repository.ts";

/** Removes up to `limit` of the user's reactions; returns how many it removed (0: none left). */
export async function removeSomeReactionsOf(db: Kysely<Database>, publisher: EventPublisher, userId: string, limit: number): Promise<number> {
  const batch = await repo.findReactionsBy(db, userId, limit);
  if (batch.length === 0) return 0;
  return writeWithEvents(db, publisher, async (tx, recorded) => {
    await repo.lockReactedMessages(tx, batch);
    const removed = await repo.deleteReactions(tx, batch);
    // A user has one reaction per (message, emoji), so each count changes once: its final value is the count after.
    const counts = await repo.applyCountDeltas(tx, removed.map((k) => ({ conversationId: k.conversationId, seq: k.seq, emoji: k.emoji, delta: -1 })));
    for (const k of removed) {
      recorded.push({
        conversationId: k.conversationId,
        actorId: userId,
        kind: {
          case: "reactionRemoved",
          value: create(ReactionRemovedSchema, { messageSeq: BigInt(k.seq), emoji: k.emoji, userId, count: counts.get(repo.countKey(k)) ?? 0n }),
        },
      });
    }
    return removed.length;
  });
}
