/**
 * Picks the presence tracker for the deployment: the NATS KV registry shared by all nodes,
 * or the in-memory one of the embedded single-node mode.
 */
import type { Kysely } from "kysely";
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "../log/event-bus.ts";
import type { Subjects } from "../log/subjects.ts";
import { createMemoryPresenceTracker } from "./memory-presence-tracker.ts";
import { createNatsPresenceTracker } from "./nats-presence-tracker.ts";
import type { PresenceTracker } from "./presence-tracker.ts";

export type { PresenceInfo, PresenceTracker } from "./presence-tracker.ts";
export { createMemoryPresenceTracker, type MemoryPresenceTrackerOptions } from "./memory-presence-tracker.ts";
export { createNatsPresenceTracker, type NatsPresenceTrackerOptions } from "./nats-presence-tracker.ts";

export interface PresenceTrackerOptions {
  nats: NatsConnection | null;
  subjects: Subjects;
  db: Kysely<Database>;
  bus: EventBus;
  nodeId: string;
  ttlMs: number;
  logger: Logger;
}

export function createPresenceTracker({ nats, subjects, db, bus, nodeId, ttlMs, logger }: PresenceTrackerOptions): PresenceTracker {
  if (nats === null) return createMemoryPresenceTracker({ db, bus, logger });
  return createNatsPresenceTracker({ connection: nats, subjects, db, bus, nodeId, ttlMs, logger });
}
