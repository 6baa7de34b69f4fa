/**
 * The search indexer's work: message created / edited / deleted events in, one bulk write to
 * the index out. It runs as a durable consumer (name "search-indexer"); deliveries can repeat
 * or arrive out of order, which is safe because the index keeps only the highest version of a
 * message and never revives a deleted one. Encrypted messages are never indexed.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { StoredEvent } from "../log/index.ts";
import { failureBackoffMs, type Delivered, type Outcome } from "../workers/index.ts";
import { toIndexedMessage } from "./message-document.ts";
import type { IndexedMessage, RemovedMessage, SearchIndex } from "./search-index.ts";
import type { SearchMetrics } from "./search-metrics.ts";

export interface SearchIndexerOptions {
  index: SearchIndex;
  metrics: SearchMetrics;
  logger: Logger;
}

/** What an event asks of the index, or why it cannot be handled. */
type Change = { upsert: IndexedMessage } | { remove: RemovedMessage } | "none" | { poison: string };

export function createSearchIndexer({ index, metrics, logger }: SearchIndexerOptions) {
  return {
    async handle(batch: readonly Delivered<StoredEvent>[]): Promise<Outcome[]> {
      const changes = batch.map((delivery) => changeOf(delivery.value));
      const upserts = changes.flatMap((c) => (typeof c === "object" && "upsert" in c ? [c.upsert] : []));
      const removals = changes.flatMap((c) => (typeof c === "object" && "remove" in c ? [c.remove] : []));
      if (upserts.length > 0 || removals.length > 0) {
        try {
          await index.apply({ upserts, removals });
        } catch (error) {
          logger.warn({ err: error, events: batch.length }, "search index write failed; the events will be redelivered");
          return changes.map((c, i) => (typeof c === "object" && "poison" in c ? c : { retryAfterMs: failureBackoffMs(batch[i]!.deliveryCount) }));
        }
      }
      const now = Date.now();
      return changes.map((change, i) => {
        if (typeof change === "object" && "poison" in change) {
          logger.error({ eventId: batch[i]!.value.event.id, reason: change.poison }, "search indexer dropped a malformed event");
          return change;
        }
        if (change !== "none") metrics.observeLag((now - eventTimeMs(batch[i]!.value)) / 1000);
        return "done";
      });
    },
  };
}

function eventTimeMs(stored: StoredEvent): number {
  return stored.event.createdAt ? timestampMs(stored.event.createdAt) : Date.now();
}

function changeOf(stored: StoredEvent): Change {
  const kind = stored.event.kind;
  switch (kind.case) {
    case "messageCreated":
    case "messageEdited":
      return kind.value.message ? upsertOf(kind.value.message) : { poison: `${kind.case} without a message` };
    case "messageDeleted": {
      const conversationId = stored.event.conversationId;
      if (conversationId === "" || kind.value.messageId === "" || kind.value.messageSeq <= 0n) return { poison: "messageDeleted without its message" };
      return { remove: { conversationId, seq: kind.value.messageSeq, messageId: kind.value.messageId } };
    }
    default:
      return "none";
  }
}

/** A message to index; one without indexable text (encrypted) changes nothing. */
function upsertOf(message: Message): Change {
  if (message.id === "" || message.conversationId === "" || message.seq <= 0n || !message.createdAt) return { poison: "message without its identity" };
  const document = toIndexedMessage(message);
  return document ? { upsert: document } : "none";
}
