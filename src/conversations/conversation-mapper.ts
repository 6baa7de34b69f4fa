/** Conversation and member rows to protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConversationSchema, MemberSchema, type Conversation, type ConversationType, type Member, type MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MessagePreviewSchema } from "../../gen/parley/v1/message_pb.ts";
import type { ConversationViewRow, MemberRow } from "./conversation-repository.ts";

export function toConversation(row: ConversationViewRow): Conversation {
  return create(ConversationSchema, {
    id: row.id,
    type: row.type as ConversationType,
    name: row.name,
    description: row.description,
    createdBy: row.created_by,
    createdAt: timestampFromDate(row.created_at),
    lastActivityAt: timestampFromDate(row.last_activity_at),
    memberCount: row.member_count,
    lastSeq: BigInt(row.last_seq),
    myRole: row.my_role as MemberRole,
    myLastReadSeq: BigInt(row.my_last_read_seq),
    unreadCount: BigInt(row.unread_count),
    directPeerId: row.direct_peer_id ?? "",
    ...(row.lm_seq !== null && {
      lastMessage: create(MessagePreviewSchema, {
        seq: BigInt(row.lm_seq),
        senderId: row.lm_sender_id ?? "",
        ...(row.lm_created_at && { createdAt: timestampFromDate(row.lm_created_at) }),
        content: row.lm_encrypted
          ? { case: "encrypted", value: true }
          : { case: "text", value: row.lm_text ?? "" },
      }),
    }),
  });
}

export function toMember(row: MemberRow): Member {
  return create(MemberSchema, {
    userId: row.user_id,
    role: row.role as MemberRole,
    joinedAt: timestampFromDate(row.joined_at),
    lastReadSeq: BigInt(row.last_read_seq),
  });
}
