/**
 * Picks the presence tracker for the deployment: the NATS KV registry shared by all nodes,
 * or the in-memory one of the embedded single-node mode.
 */
import type { Kysely } from "kysely";
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "../events/event-bus.ts";
import type { Subjects } from "../events/subjects.ts";
import type { PresenceTracker } from "./presence-tracker.ts";

export type { PresenceInfo, PresenceTracker } from "./presence-tracker.ts";

export interface PresenceTrackerOptions {
  nats: NatsConnection | null;
  subjects: Subjects;
  db: Kysely<Database>;
  bus: EventBus;
  nodeId: string;
  ttlMs: number;
  logger: Logger;
}

export function createPresenceTracker(_options: PresenceTrackerOptions): PresenceTracker {
  // Placeholder until the trackers land: nobody is online.
  return {
    streamOpened() {},
    streamClosed() {},
    async lookup() {
      return new Map();
    },
    async close() {},
  };
}
