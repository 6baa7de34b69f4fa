/** Conversation and member rows to protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  MemberSchema,
  ReadPositionSchema,
  type Conversation,
  type ConversationType,
  type Member,
  type MemberRole,
  type ReadPosition,
} from "../../gen/parley/v1/conversation_pb.ts";
import { toPreview, toTimestamp } from "../messages/message-mapper.ts";
import { toRetentionDuration } from "../retention/retention-duration.ts";
import type { ConversationViewRow, MemberRow } from "./conversation-repository.ts";

/**
 * A conversation as its member sees it. Built as a literal rather than with create(): a page of
 * ListConversations maps 50 of these with a preview and two or three timestamps each, and
 * create()'s walk over the schema was a visible share of the call (the bytes on the wire are
 * the same; test/conversations/mappers.test.ts holds the two to each other).
 */
export function toConversation(row: ConversationViewRow): Conversation {
  const conversation: Conversation = {
    $typeName: "parley.v1.Conversation",
    id: row.id,
    type: row.type as ConversationType,
    name: row.name,
    description: row.description,
    createdBy: row.created_by,
    createdAt: toTimestamp(row.created_at),
    lastActivityAt: toTimestamp(row.last_activity_at),
    memberCount: row.member_count,
    lastSeq: BigInt(row.last_seq),
    myRole: row.my_role as MemberRole,
    myLastReadSeq: BigInt(row.my_last_read_seq),
    unreadCount: BigInt(row.unread_count),
    directPeerId: row.direct_peer_id ?? "",
    unreadMentionCount: BigInt(row.unread_mention_count),
    encrypted: row.encrypted,
    blindSearch: row.blind_search,
    keyEpoch: row.key_epoch,
  };
  if (row.message_retention_seconds !== null) conversation.messageRetention = toRetentionDuration(row.message_retention_seconds);
  if (row.effective_retention_seconds !== null) conversation.effectiveMessageRetention = toRetentionDuration(row.effective_retention_seconds);
  if (row.lm_seq !== null) {
    conversation.lastMessage = toPreview({
      seq: row.lm_seq,
      senderId: row.lm_sender_id ?? "",
      createdAt: row.lm_created_at,
      text: row.lm_text,
      encrypted: row.lm_encrypted ?? false,
      deleted: row.lm_deleted ?? false,
    });
  }
  return conversation;
}

export function toMember(row: MemberRow): Member {
  return create(MemberSchema, {
    userId: row.user_id,
    role: row.role as MemberRole,
    joinedAt: timestampFromDate(row.joined_at),
    lastReadSeq: BigInt(row.last_read_seq),
  });
}

export function toReadPosition(row: { user_id: string; last_read_seq: string; read_at: Date | null }): ReadPosition {
  return create(ReadPositionSchema, {
    userId: row.user_id,
    lastReadSeq: BigInt(row.last_read_seq),
    ...(row.read_at && { readAt: timestampFromDate(row.read_at) }),
  });
}
