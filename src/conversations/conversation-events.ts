/** The events conversation changes record, built in one place. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MemberSchema, type MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import {
  ConversationUpdatedSchema,
  MemberAddedSchema,
  MemberRemovedSchema,
  MemberRoleChangedSchema,
  ReadPositionMovedSchema,
} from "../../gen/parley/v1/event_pb.ts";
import type { NewEvent } from "../log/event-log.ts";
import { toRetentionDuration } from "../retention/retention-duration.ts";

/** Sent to the conversation and to the new member, whose streams start following it. */
export function memberAdded(conversationId: string, actorId: string, userId: string, role: number, joinedAt: Date, lastReadSeq = 0n): NewEvent {
  return {
    conversationId,
    targetUserId: userId,
    actorId,
    kind: {
      case: "memberAdded",
      value: create(MemberAddedSchema, {
        member: create(MemberSchema, { userId, role: role as MemberRole, joinedAt: timestampFromDate(joinedAt), lastReadSeq }),
      }),
    },
  };
}

/** Sent to the conversation and to the member who is gone: the last event they get of it. */
export function memberRemoved(conversationId: string, actorId: string, userId: string, keyEpoch: number): NewEvent {
  return {
    conversationId,
    targetUserId: userId,
    actorId,
    kind: { case: "memberRemoved", value: create(MemberRemovedSchema, { userId, left: actorId === userId, keyEpoch }) },
  };
}

export function memberRoleChanged(conversationId: string, actorId: string, userId: string, role: number): NewEvent {
  return {
    conversationId,
    actorId,
    kind: { case: "memberRoleChanged", value: create(MemberRoleChangedSchema, { userId, role: role as MemberRole }) },
  };
}

/** The conversation's details after a change, with its own retention and the one that applies (seconds, null for none). */
export function conversationUpdated(
  conversationId: string,
  actorId: string,
  details: { name: string; description: string; retentionSeconds: string | number | null; effectiveRetentionSeconds: number | null },
): NewEvent {
  const value = create(ConversationUpdatedSchema, {
    name: details.name,
    description: details.description,
    messageRetention: toRetentionDuration(details.retentionSeconds),
    effectiveMessageRetention: toRetentionDuration(details.effectiveRetentionSeconds),
  });
  return { conversationId, actorId, kind: { case: "conversationUpdated", value } };
}

export function readPositionMoved(conversationId: string, userId: string, lastReadSeq: bigint): NewEvent {
  return { conversationId, actorId: userId, kind: { case: "readPositionMoved", value: create(ReadPositionMovedSchema, { userId, lastReadSeq }) } };
}
