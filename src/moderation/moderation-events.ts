/** The events moderation records, built in one place. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountModeratedSchema, type AccountModerated } from "../../gen/parley/v1/event_pb.ts";
import type { ModerationAction } from "../../gen/parley/v1/moderation_pb.ts";
import type { NewEvent } from "../log/event-log.ts";

/** The decision as the user (and every node's restriction cache) receives it. */
export function moderationDecision(action: ModerationAction, until: Date | null, reason: string): AccountModerated {
  return create(AccountModeratedSchema, { action, ...(until && { until: timestampFromDate(until) }), reason });
}

/**
 * To the moderated user only. The actor is left empty: a user learns what was decided, never
 * which operator decided it (nor, for a report, who reported).
 */
export function accountModerated(userId: string, decision: AccountModerated): NewEvent {
  return { conversationId: null, targetUserId: userId, actorId: "", kind: { case: "accountModerated", value: decision } };
}
