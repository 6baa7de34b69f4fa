/**
 * Publishes committed events right after their transaction commits. The request never waits
 * for it: if a publish is lost, every node's feed hub notices the hole in that partition's
 * positions and reads the events from PostgreSQL, and the relay republishes them to JetStream.
 */
import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "./event-bus.ts";
import { appendEvents, type EventLogLayout, type NewEvent, type StoredEvent } from "./event-log.ts";

export interface EventPublisher {
  /** The log the events are recorded in (writers need its partition count). */
  readonly log: EventLogLayout;
  publish(events: readonly StoredEvent[]): void;
  /** Waits for publishes under way (at shutdown). */
  flush(): Promise<void>;
}

/** Test-only fault injection: events for which dropPublish answers true are never published. */
export interface PublishFaults {
  dropPublish?: (partition: number, position: bigint) => boolean;
}

export function createEventPublisher(bus: EventBus, log: EventLogLayout, logger: Logger, faults: PublishFaults = {}): EventPublisher {
  const inFlight = new Set<Promise<void>>();
  const { dropPublish } = faults;
  return {
    log,
    publish(all) {
      const events = dropPublish ? all.filter((e) => !dropPublish(e.partition, e.position)) : all;
      if (events.length === 0) return;
      const done = bus
        .publish(events)
        .catch((error: unknown) => logger.warn({ err: error, partition: events[0]!.partition, first: String(events[0]!.position) }, "event publish failed; the relay will fill it in"))
        .finally(() => inFlight.delete(done));
      inFlight.add(done);
    },
    async flush() {
      await Promise.all([...inFlight]);
    },
  };
}

/**
 * Runs work in one transaction, records the events it collected as the transaction's last
 * statement (so they commit with the change, or not at all), and publishes them after commit.
 */
export async function writeWithEvents<T>(
  db: Kysely<Database>,
  publisher: EventPublisher,
  work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>,
): Promise<T> {
  const { result, stored } = await db.transaction().execute(async (tx) => {
    const recorded: NewEvent[] = [];
    const result = await work(tx, recorded);
    return { result, stored: await appendEvents(tx, publisher.log, recorded) };
  });
  publisher.publish(stored);
  return result;
}
