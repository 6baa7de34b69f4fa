/** Notification rows to protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  NotificationLevel,
  NotificationSchema,
  NotificationSettingsSchema,
  PushEntrySchema,
  type Notification,
  type NotificationKind,
  type NotificationSettings,
  type PushEntry,
} from "../../gen/parley/v1/notification_pb.ts";
import { toPreview } from "../messages/message-mapper.ts";
import { Level, type ListedNotificationRow, type NotificationRow } from "./notification-repository.ts";

/** The notification without a message preview (what events and push entries carry). */
export function toNotification(row: NotificationRow): Notification {
  return create(NotificationSchema, {
    id: row.id,
    kind: row.kind as NotificationKind,
    conversationId: row.conversation_id,
    actorId: row.actor_id,
    messageSeq: BigInt(row.message_seq),
    viaEveryone: row.via_everyone,
    createdAt: timestampFromDate(row.created_at),
    read: row.read_at !== null,
  });
}

/** The notification with a preview of its message as it is now. */
export function toListedNotification(row: ListedNotificationRow): Notification {
  const notification = toNotification(row);
  if (row.msg_sender_id !== null) {
    notification.message = toPreview({
      seq: row.message_seq,
      senderId: row.msg_sender_id,
      createdAt: row.msg_created_at,
      text: row.msg_text,
      encrypted: row.msg_encrypted ?? false,
      deleted: row.msg_deleted ?? false,
    });
  }
  return notification;
}

export function toPushEntry(row: NotificationRow): PushEntry {
  return create(PushEntrySchema, { recipientId: row.user_id, notification: toNotification(row) });
}

export function toSettings(conversationId: string, row: { level: number; muted_until: Date | null } | undefined): NotificationSettings {
  return create(NotificationSettingsSchema, {
    conversationId,
    level: (row?.level ?? Level.ALL) as NotificationLevel,
    ...(row?.muted_until && row.muted_until > new Date() && { mutedUntil: timestampFromDate(row.muted_until) }),
  });
}

/** The stored level for a wire level, or null when it is not one a user can choose. */
export function fromLevel(level: NotificationLevel): number | null {
  switch (level) {
    case NotificationLevel.ALL:
      return Level.ALL;
    case NotificationLevel.MENTIONS_ONLY:
      return Level.MENTIONS_ONLY;
    case NotificationLevel.NONE:
      return Level.NONE;
    default:
      return null;
  }
}
