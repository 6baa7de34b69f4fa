/** What of a message the search index keeps: the indexer and the reindex both build it here. */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { IndexedMessage } from "./search-index.ts";

/**
 * The document for a message, or null when it has no text the server may index: end-to-end
 * encrypted (the server cannot read it) or deleted. Messages from before versioning count as
 * version 1.
 */
export function toIndexedMessage(message: Message): IndexedMessage | null {
  if (message.content.case !== "text" || message.deletion !== undefined) return null;
  return {
    conversationId: message.conversationId,
    seq: message.seq,
    messageId: message.id,
    version: Math.max(message.version, 1),
    senderId: message.senderId,
    createdAt: new Date(message.createdAt ? timestampMs(message.createdAt) : 0),
    text: message.content.value,
  };
}
