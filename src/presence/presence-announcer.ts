/**
 * What both presence trackers do once they know a user came online or went offline: record
 * the last-seen time in PostgreSQL and tell the user's conversation partners. Kept in one
 * place so the embedded and the NATS tracker announce exactly the same events.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely } from "kysely";
import { EventSchema, PresenceChangedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "../log/event-bus.ts";
import { newId } from "../ids.ts";
import { findConversationIdsOf } from "../conversations/conversation-repository.ts";
import { findLastSeen, recordLastSeen } from "./presence-repository.ts";

export interface PresenceAnnouncerOptions {
  db: Kysely<Database>;
  bus: EventBus;
}

export interface PresenceAnnouncer {
  /**
   * Publishes a presence_changed event to the members of every conversation the user is in.
   * The event itself belongs to no conversation (conversation_id is empty, as event.proto
   * says); the copies differ only in their route and carry the same event id, so a feed that
   * reaches a partner through several shared conversations can deliver the change once.
   */
  announce(userId: string, online: boolean, lastSeenAt: Date | null): Promise<void>;
  /** Records that the users were last seen at `at` (never moves a later time back). */
  recordLastSeen(userIds: readonly string[], at: Date): Promise<void>;
  /** Last-seen times of the users that exist; unknown users are left out. */
  lastSeen(userIds: readonly string[]): Promise<Map<string, Date | null>>;
}

export function createPresenceAnnouncer({ db, bus }: PresenceAnnouncerOptions): PresenceAnnouncer {
  return {
    async announce(userId, online, lastSeenAt) {
      const conversationIds = await findConversationIdsOf(db, userId);
      if (conversationIds.length === 0) return;
      const now = new Date();
      const id = newId(now.getTime());
      const createdAt = timestampFromDate(now);
      const value = create(PresenceChangedSchema, {
        userId,
        online,
        lastSeenAt: lastSeenAt === null ? undefined : timestampFromDate(lastSeenAt),
      });
      const event = create(EventSchema, { id, actorId: userId, createdAt, kind: { case: "presenceChanged", value } });
      for (const conversationId of conversationIds) bus.publishEphemeral({ conversationId }, event);
    },
    recordLastSeen: (userIds, at) => recordLastSeen(db, userIds, at),
    lastSeen: (userIds) => findLastSeen(db, userIds),
  };
}
