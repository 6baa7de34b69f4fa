/** Message rows to protobuf messages and back. */
import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  EncryptedEnvelopeSchema,
  MessageDeletionSchema,
  StoryReferenceSchema,
  type Message,
  type MessagePreview,
  type ReactionSummary,
} from "../../gen/parley/v1/message_pb.ts";
import type { MessageRow, ReplyPreviewColumns } from "./message-repository.ts";

/** The stored body columns, shared by messages and their earlier versions. */
export interface ContentColumns {
  body_text: string | null;
  envelope_ciphertext: Uint8Array | null;
  envelope_nonce: Uint8Array | null;
  envelope_algorithm: string | null;
  envelope_key_id: string | null;
  envelope_key_epoch: string | number | null;
}

/**
 * The message with its reactions as one viewer sees them (none for a message just sent), and
 * the preview of the message it replies to when the row was read with one.
 */
export function toMessage(row: MessageRow & Partial<ReplyPreviewColumns>, reactions: ReactionSummary[] = []): Message {
  const replyTo =
    row.reply_to_seq !== null && row.reply_sender_id
      ? toPreview({
          seq: row.reply_to_seq,
          senderId: row.reply_sender_id,
          createdAt: row.reply_created_at ?? null,
          text: row.reply_text ?? null,
          encrypted: row.reply_encrypted ?? false,
          deleted: row.reply_deleted ?? false,
        })
      : undefined;
  // A literal rather than create() (see toConversation): a page of ListMessages maps 50.
  const message: Message = {
    $typeName: "parley.v1.Message",
    id: row.id,
    conversationId: row.conversation_id,
    seq: BigInt(row.seq),
    senderId: row.sender_id,
    clientMessageId: row.client_message_id,
    createdAt: toTimestamp(row.created_at),
    content: toContent(row),
    reactions: row.deleted_at ? [] : reactions,
    version: row.version ?? 1,
    mentionedUserIds: row.mentioned_user_ids ?? [],
    mentionsEveryone: row.mentions_everyone ?? false,
  };
  if (row.reply_to_seq !== null) message.replyToSeq = BigInt(row.reply_to_seq);
  if (row.edited_at) message.editedAt = toTimestamp(row.edited_at);
  if (row.deleted_at) message.deletion = create(MessageDeletionSchema, { deletedBy: row.deleted_by ?? "", deletedAt: toTimestamp(row.deleted_at) });
  if (replyTo) message.replyTo = replyTo;
  if (row.story_id !== null) message.story = create(StoryReferenceSchema, { storyId: row.story_id, authorId: row.story_author_id ?? "" });
  return message;
}

/** What a preview is made of (last message of a conversation, quoted reply, notification). */
export interface PreviewParts {
  seq: string | bigint;
  senderId: string;
  createdAt: Date | null;
  text: string | null;
  encrypted: boolean;
  deleted: boolean;
}

/** A preview, built as a literal (see toConversation: one per conversation of a page). */
export function toPreview(parts: PreviewParts): MessagePreview {
  const preview: MessagePreview = {
    $typeName: "parley.v1.MessagePreview",
    seq: BigInt(parts.seq),
    senderId: parts.senderId,
    content: parts.deleted
      ? { case: "deleted", value: true }
      : parts.encrypted
        ? { case: "encrypted", value: true }
        : { case: "text", value: parts.text ?? "" },
  };
  if (parts.createdAt) preview.createdAt = toTimestamp(parts.createdAt);
  return preview;
}

/** timestampFromDate's result (same seconds and nanos), without create()'s walk over the schema. */
export function toTimestamp(date: Date): Timestamp {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** The body as the oneof the wire uses (none for a tombstone). */
export function toContent(row: ContentColumns): { case: "text"; value: string } | { case: "envelope"; value: ReturnType<typeof toEnvelope> } | { case: undefined; value?: undefined } {
  if (row.envelope_ciphertext !== null) return { case: "envelope", value: toEnvelope(row) };
  if (row.body_text !== null) return { case: "text", value: row.body_text };
  return { case: undefined };
}

function toEnvelope(row: ContentColumns) {
  return create(EncryptedEnvelopeSchema, {
    ciphertext: row.envelope_ciphertext ?? new Uint8Array(),
    nonce: row.envelope_nonce ?? new Uint8Array(),
    algorithm: row.envelope_algorithm ?? "",
    keyId: row.envelope_key_id ?? "",
    keyEpoch: Number(row.envelope_key_epoch ?? 0),
  });
}
