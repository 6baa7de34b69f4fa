/** Message rows to protobuf messages and back. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EncryptedEnvelopeSchema, MessageSchema, StoryReferenceSchema, type Message, type ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import type { MessageRow } from "./message-repository.ts";

/** The message with its reactions as one viewer sees them (none for a message just sent). */
export function toMessage(row: MessageRow, reactions: ReactionSummary[] = []): Message {
  return create(MessageSchema, {
    id: row.id,
    conversationId: row.conversation_id,
    seq: BigInt(row.seq),
    senderId: row.sender_id,
    clientMessageId: row.client_message_id,
    createdAt: timestampFromDate(row.created_at),
    ...(row.reply_to_seq !== null && { replyToSeq: BigInt(row.reply_to_seq) }),
    content: toContent(row),
    reactions,
    ...(row.story_id !== null && { story: create(StoryReferenceSchema, { storyId: row.story_id, authorId: row.story_author_id ?? "" }) }),
  });
}

function toContent(row: MessageRow): Message["content"] {
  if (row.envelope_ciphertext !== null) {
    return {
      case: "envelope",
      value: create(EncryptedEnvelopeSchema, {
        ciphertext: row.envelope_ciphertext,
        nonce: row.envelope_nonce ?? new Uint8Array(),
        algorithm: row.envelope_algorithm ?? "",
        keyId: row.envelope_key_id ?? "",
        keyEpoch: Number(row.envelope_key_epoch ?? 0),
      }),
    };
  }
  if (row.body_text !== null) return { case: "text", value: row.body_text };
  return { case: undefined };
}
