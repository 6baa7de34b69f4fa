/**
 * The notifier: a durable consumer of conversation events that turns mentions, replies to a
 * user's messages and being added to a conversation into notifications. Per batch:
 *   1. one transaction inserts the notification rows (set-based, idempotent by
 *      (user, source event): a redelivered event inserts nothing) and records a
 *      notification_created event for each new row on its user's feed, last;
 *   2. after commit, every notification of the batch's events that should be pushed and is not
 *      yet known to be is published to the push outbox with its id as the message id (then
 *      the feed events go out), then marked pushed.
 * A crash anywhere repeats at most step 2 for some rows on redelivery; the outbox drops
 * entries whose id it has seen (JetStream's duplicate window), so each push entry exists once.
 */
import { create } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { NotificationCreatedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import { appendEvents, type StoredEvent } from "../log/event-log.ts";
import type { EventPublisher } from "../log/event-publisher.ts";
import type { Subjects } from "../log/subjects.ts";
import { toNotification, toPushEntry } from "../notifications/notification-mapper.ts";
import * as repo from "../notifications/notification-repository.ts";
import type { PushOutbox } from "../notifications/push-outbox.ts";
import { decodeStoredEvent, type ConsumerSpec } from "./index.ts";

export interface NotifierOptions {
  db: Kysely<Database>;
  events: EventPublisher;
  push: PushOutbox;
  subjects: Subjects;
}

/** Events per batch: an @everyone in a 500-member group is one event, so batches stay small in rows. */
const BATCH_SIZE = 128;

export function createNotifierSpec(options: NotifierOptions): ConsumerSpec<StoredEvent> {
  return {
    name: "notifier",
    filterSubject: options.subjects.allConversationEvents,
    decode: decodeStoredEvent,
    batchSize: BATCH_SIZE,
    async handle(batch) {
      await notify(options, batch.map((d) => d.value));
      return batch.map(() => "done" as const);
    },
  };
}

/** Handles a batch of events (idempotent: safe to repeat for any of them). */
export async function notify({ db, events, push }: NotifierOptions, batch: readonly StoredEvent[]): Promise<void> {
  const intents = batch.flatMap(notificationIntents);
  if (intents.length === 0) return;
  const stored = await db.transaction().execute(async (tx) => {
    const rows = await repo.insertNotifications(tx, intents);
    return appendEvents(
      tx,
      events.log,
      rows.map((row) => ({
        conversationId: null,
        targetUserId: row.user_id,
        actorId: row.actor_id,
        kind: { case: "notificationCreated" as const, value: create(NotificationCreatedSchema, { notification: toNotification(row) }) },
      })),
    );
  });
  // Pushes first: the feed reads PostgreSQL anyway, a device that is away only has the push.
  const unpushed = await repo.findUnpushed(db, [...new Set(intents.map((i) => i.eventId))]);
  await push.publish(unpushed.map(toPushEntry));
  events.publish(stored);
  await repo.markPushed(db, unpushed.map((row) => row.id));
}

/** What in one event may notify someone (recipients and settings are resolved in SQL). */
export function notificationIntents({ conversationId, event }: StoredEvent): repo.Intent[] {
  if (conversationId === null) return [];
  const base = { eventId: event.id, conversationId, actorId: event.actorId };
  const { kind } = event;
  if (kind.case === "memberAdded" && kind.value.member) {
    return [{ ...base, messageSeq: 0n, what: "added", userId: kind.value.member.userId, replyToSeq: null }];
  }
  if (kind.case !== "messageCreated" || !kind.value.message) return [];
  const message = kind.value.message;
  const about = { ...base, messageSeq: message.seq, replyToSeq: null };
  return [
    ...message.mentionedUserIds.map((userId): repo.Intent => ({ ...about, what: "mention", userId })),
    ...(message.mentionsEveryone ? [{ ...about, what: "everyone" as const, userId: null }] : []),
    ...(message.replyToSeq !== undefined ? [{ ...about, what: "reply" as const, userId: null, replyToSeq: message.replyToSeq }] : []),
  ];
}
