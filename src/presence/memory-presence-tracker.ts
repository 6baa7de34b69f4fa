/**
 * Presence for the embedded single-node mode: this process holds every stream there is, so a
 * user is online exactly while this node counts a stream of theirs. Announcements and
 * last-seen go through the same code as the NATS tracker.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "../log/event-bus.ts";
import { createLocalPresence } from "./local-presence.ts";
import { createPresenceAnnouncer } from "./presence-announcer.ts";
import type { PresenceTracker } from "./presence-tracker.ts";

export interface MemoryPresenceTrackerOptions {
  db: Kysely<Database>;
  bus: EventBus;
  logger: Pick<Logger, "warn">;
}

export function createMemoryPresenceTracker({ db, bus, logger }: MemoryPresenceTrackerOptions): PresenceTracker {
  return createLocalPresence({
    // The local stream counts are the whole truth: joining always brings the user online,
    // leaving always takes them offline, and no one else holds anybody.
    registry: {
      join: async () => true,
      leave: async () => true,
      online: async () => new Set(),
    },
    announcer: createPresenceAnnouncer({ db, bus }),
    logger,
    closeTimeoutMs: 5_000,
  });
}
