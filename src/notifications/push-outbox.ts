/**
 * The push outbox: where notifications that should reach a device go, for a push gateway
 * (an APNs/FCM bridge, outside Parley) to deliver. With NATS it is the JetStream stream
 * `<PREFIX>_PUSH`, one subject per user (`<prefix>.push.<base64url user id>`), each entry a
 * binary parley.v1.PushEntry published with Nats-Msg-Id = notification id, so a republished
 * entry is stored once. In embedded mode it is an in-process list with the same
 * deduplication, which lives as long as the process.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { DeliverPolicy, type NatsConnection } from "nats";
import { PushEntrySchema, type PushEntry } from "../../gen/parley/v1/notification_pb.ts";
import type { Subjects } from "../log/subjects.ts";

export interface PushOutbox {
  /** Adds the entries; an entry whose notification id was added before is dropped. */
  publish(entries: readonly PushEntry[]): Promise<void>;
  /** A user's entries, oldest first (for tools and tests; a gateway consumes the stream). */
  read(userId: string): Promise<PushEntry[]>;
  /** Drops every entry of the user that a gateway has not taken yet (account erasure). */
  forget(userId: string): Promise<void>;
}

/** How long read() waits for the last entries of a user's subject. */
const READ_EXPIRES_MS = 1_000;

export function createJetStreamPushOutbox(connection: NatsConnection, subjects: Subjects): PushOutbox {
  const js = connection.jetstream();
  return {
    async publish(entries) {
      await Promise.all(
        entries.map((entry) => js.publish(subjects.push(entry.recipientId), toBinary(PushEntrySchema, entry), { msgID: entry.notification!.id })),
      );
    },
    async read(userId) {
      const consumer = await js.consumers.get(subjects.pushStream, { filterSubjects: [subjects.push(userId)], deliver_policy: DeliverPolicy.All });
      const pending = (await consumer.info()).num_pending;
      const entries: PushEntry[] = [];
      while (entries.length < pending) {
        const batch = await consumer.fetch({ max_messages: pending - entries.length, expires: READ_EXPIRES_MS });
        const before = entries.length;
        for await (const msg of batch) entries.push(fromBinary(PushEntrySchema, msg.data));
        if (entries.length === before) break;
      }
      return entries;
    },
    async forget(userId) {
      const jsm = await connection.jetstreamManager();
      await jsm.streams.purge(subjects.pushStream, { filter: subjects.push(userId) });
    },
  };
}

export function createInProcessPushOutbox(): PushOutbox {
  const byUser = new Map<string, PushEntry[]>();
  const seen = new Set<string>();
  return {
    async publish(entries) {
      for (const entry of entries) {
        const id = entry.notification!.id;
        if (seen.has(id)) continue;
        seen.add(id);
        const list = byUser.get(entry.recipientId) ?? [];
        list.push(entry);
        byUser.set(entry.recipientId, list);
      }
    },
    async read(userId) {
      return [...(byUser.get(userId) ?? [])];
    },
    async forget(userId) {
      byUser.delete(userId);
    },
  };
}
