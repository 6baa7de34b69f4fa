/**
 * The outbox relay and log upkeep. Publishing right after commit is the fast path; this is
 * the safety net that makes JetStream complete anyway:
 * - at start-up, events recorded after the relay's checkpoint of their partition (a node died
 *   between commit and publish, or all nodes were down) are published again;
 * - events the feed hub had to read from PostgreSQL (their publish was lost) are published;
 * - one node at a time (a transaction-scoped advisory lock) advances each partition's
 *   checkpoint to what the hub has seen in order there, and prunes events older than the
 *   replay window.
 * Republishing is safe: JetStream stores an event id once within its duplicate window, and
 * every consumer is idempotent by log position.
 */
import { sql, type Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "./event-bus.ts";
import { advanceRelayedThrough, pruneEvents, readHeads, readRange, readRelayedThrough, type StoredEvent } from "./event-log.ts";
import type { LogPosition } from "./log-position.ts";

/** Names the relay leader among advisory locks. */
const RELAY_LOCK_ID = 7_462_315_002;
const REPUBLISH_PAGE = 1000n;

export interface OutboxRelayOptions {
  db: Kysely<Database>;
  /** The bus to (re)publish to; null in embedded mode, where there is nothing to relay to. */
  bus: EventBus | null;
  /** What this node has seen in order in each partition (the feed hub's position). */
  seenThrough: () => LogPosition;
  replayWindowMs: number;
  logger: Logger;
  intervalMs?: number;
}

export interface OutboxRelay {
  start(): Promise<void>;
  /** Publishes events whose first publish was lost. */
  republish(events: readonly StoredEvent[]): void;
  stop(): Promise<void>;
}

export function createOutboxRelay(options: OutboxRelayOptions): OutboxRelay {
  const { db, bus, logger } = options;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();
  let lastPrune = 0;

  const tick = async () => {
    await db.transaction().execute(async (tx) => {
      const lock = await sql<{ leader: boolean }>`select pg_try_advisory_xact_lock(${RELAY_LOCK_ID}) as leader`.execute(tx);
      if (!lock.rows[0]?.leader) return;
      if (bus) await advanceRelayedThrough(tx, options.seenThrough());
      if (Date.now() - lastPrune > 60_000) {
        lastPrune = Date.now();
        const pruned = await pruneEvents(tx, new Date(Date.now() - options.replayWindowMs));
        if (pruned > 0) logger.info({ pruned }, "pruned events older than the replay window");
      }
    });
  };

  return {
    async start() {
      if (bus) {
        const relayed = await readRelayedThrough(db);
        const heads = await readHeads(db);
        for (const [partition, head] of heads.entries()) {
          const from = relayed[partition]! + 1n;
          for (let start = from; start <= head; start += REPUBLISH_PAGE) {
            await bus.publish(await readRange(db, partition, start, start + REPUBLISH_PAGE - 1n));
          }
          if (head >= from) logger.info({ partition, from: String(from), to: String(head) }, "relay republished events after the checkpoint");
        }
      }
      timer = setInterval(() => {
        running = tick().catch((error: unknown) => logger.warn({ err: error }, "relay tick failed"));
      }, options.intervalMs ?? 1000);
      timer.unref();
    },
    republish(events) {
      if (!bus || events.length === 0) return;
      bus.publish(events).catch((error: unknown) => logger.warn({ err: error }, "relay could not republish events"));
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
