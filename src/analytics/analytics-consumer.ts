/**
 * The "analytics" consumer: rolls every event of the log up into the hourly and daily figures,
 * exactly once. JetStream redelivers and the relay republishes, so a delivery is no proof of
 * anything new; what is applied is decided by the watermarks instead:
 *   - one transaction per delivered batch locks the watermarks of the batch's partitions,
 *     applies each partition's events after its watermark strictly in position order, and
 *     moves the watermarks, all or nothing;
 *   - a position at or below a watermark was applied already and is skipped;
 *   - positions are gapless, so a batch that does not start right after the watermark (a
 *     delivery still on its way, or handed to another node, or from before the consumer
 *     existed) reads the missing events from the event log instead of waiting for them.
 * Nodes share the durable consumer; two batches of one partition serialise on its watermark.
 */
import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import { readRange, type EventLogLayout, type StoredEvent } from "../log/event-log.ts";
import type { Subjects } from "../log/subjects.ts";
import { receiveStoredEvent } from "../log/event-wire.ts";
import type { ConsumerSpec } from "../workers/index.ts";
import { analyticsChangeOf, type MessageSent, type StoryFigure } from "./analytics-events.ts";
import * as repo from "./analytics-repository.ts";

/** Events per batch: a batch is one transaction, and most of its events are set-based statements. */
const BATCH_SIZE = 512;
/**
 * How long a batch smaller than BATCH_SIZE waits before it is applied. Deliveries that arrive
 * meanwhile queue up for the next batch, so at a moderate rate the consumer commits a few
 * transactions a second instead of one per event or two (its cost per message is mostly per
 * transaction), for at most this much more lag.
 */
const LINGER_MS = 250;
/**
 * Most events of one partition read from the log in one batch. A long gap (the consumer was
 * off, or is new with a watermark far behind) is read a slice per batch; the deliveries past
 * the slice come back (a retry without delay) and read the next one.
 */
const MAX_FILL = 10_000n;

export interface AnalyticsConsumerOptions {
  db: Kysely<Database>;
  subjects: Subjects;
  logger: Logger;
}

export function createAnalyticsSpec(options: AnalyticsConsumerOptions): ConsumerSpec<StoredEvent> {
  return {
    name: "analytics",
    // Every event, not only those that change a figure: each position must arrive (or be read)
    // for the watermark to move past it.
    filterSubject: options.subjects.allEvents,
    // Decoded lazily: the routing headers alone decide whether a delivery is new.
    decode: receiveStoredEvent,
    batchSize: BATCH_SIZE,
    async handle(batch) {
      if (batch.length < BATCH_SIZE) await new Promise((resolve) => setTimeout(resolve, LINGER_MS));
      const through = await applyDelivered(options, batch.map((d) => d.value));
      return batch.map(({ value }) => (value.position <= (through.get(value.partition) ?? value.position) ? "done" : { retryAfterMs: 0 }));
    },
  };
}

/**
 * Before the consumer starts: a database without watermarks gets its figures computed from the
 * raw tables (so a deployment that turns analytics on sees its history), and watermarks of an
 * older event log (a repartition started positions over) are moved to the new log's heads.
 */
export async function prepareAnalytics(db: Kysely<Database>, log: EventLogLayout, logger: Logger): Promise<void> {
  await repo.exclusively(db, async (tx) => {
    const logs = await repo.findWatermarkLogs(tx);
    if (logs.length === 0) {
      const hourlyRows = await repo.recomputeAll(tx);
      await repo.setWatermarksToHeads(tx, log.logId);
      logger.info({ hourlyRows }, "analytics computed from the database");
    } else if (logs.some((id) => id !== log.logId) || logs.length !== log.partitions) {
      await repo.setWatermarksToHeads(tx, log.logId);
      logger.warn("analytics watermarks moved to a new event log; run `npm run analytics:rebuild` for exact figures");
    }
  });
}

/** Recomputes every rollup and sets the watermarks to the log heads of that same snapshot. */
export async function rebuildAnalytics(db: Kysely<Database>, log: EventLogLayout): Promise<{ hourlyRows: number }> {
  return repo.exclusively(db, async (tx) => {
    const hourlyRows = await repo.recomputeAll(tx);
    await repo.setWatermarksToHeads(tx, log.logId);
    return { hourlyRows };
  });
}

/**
 * Applies what is new in the delivered events, in one transaction. Returns how far each
 * partition got when that is short of its last delivered event (a long gap is filled a slice at
 * a time): the deliveries past it are to come again.
 */
export async function applyDelivered({ db, logger }: AnalyticsConsumerOptions, delivered: readonly StoredEvent[]): Promise<Map<number, bigint>> {
  const byPartition = new Map<number, Map<bigint, StoredEvent>>();
  for (const event of delivered) {
    let positions = byPartition.get(event.partition);
    if (!positions) byPartition.set(event.partition, (positions = new Map()));
    positions.set(event.position, event);
  }
  const partitions = [...byPartition.keys()].sort((a, b) => a - b);
  return db.transaction().execute(async (tx) => {
    const watermarks = await repo.lockWatermarks(tx, partitions);
    const through = new Map<number, bigint>();
    const short = new Map<number, bigint>();
    const events: StoredEvent[] = [];
    for (const partition of partitions) {
      const watermark = watermarks.get(partition);
      if (watermark === undefined) throw new Error(`no analytics watermark for partition ${partition}`);
      const fresh = [...byPartition.get(partition)!.values()].filter((e) => e.position > watermark).sort((a, b) => (a.position < b.position ? -1 : 1));
      if (fresh.length === 0) continue;
      const delivered = fresh.at(-1)!.position;
      const last = delivered - watermark > MAX_FILL ? watermark + MAX_FILL : delivered;
      if (last < delivered) short.set(partition, last);
      events.push(...(await inOrder(tx, partition, watermark, last, fresh.filter((e) => e.position <= last), logger)));
      through.set(partition, last);
    }
    if (through.size === 0) return short;
    await applyEvents(tx, events);
    await repo.advanceWatermarks(tx, through);
    return short;
  });
}

/**
 * Every event of the partition in (watermark, last]: the delivered ones when they are all
 * there, else the range read from the log. Events already pruned from the log (a consumer that
 * was off for longer than the replay window) cannot be counted: logged, skipped.
 */
async function inOrder(tx: Transaction<Database>, partition: number, watermark: bigint, last: bigint, fresh: StoredEvent[], logger: Logger): Promise<StoredEvent[]> {
  const expected = last - watermark;
  if (BigInt(fresh.length) === expected) return fresh;
  const read = await readRange(tx, partition, watermark + 1n, last);
  if (BigInt(read.length) !== expected) {
    logger.error({ partition, from: String(watermark + 1n), to: String(last), missing: String(expected - BigInt(read.length)) }, "events are gone from the log before analytics counted them; run `npm run analytics:rebuild`");
  }
  return read;
}

/**
 * Applies events in log order. Reaction changes and deletions go one by one (each depends on
 * the ones before it on the same message); sent messages and story figures commute, so each
 * kind is one set-based statement.
 */
async function applyEvents(tx: Transaction<Database>, events: readonly StoredEvent[]): Promise<void> {
  const messages: MessageSent[] = [];
  const stories: StoryFigure[] = [];
  for (const event of events) {
    const change = analyticsChangeOf(event);
    if (change === null) continue;
    switch (change.kind) {
      case "message":
        messages.push(change);
        break;
      case "story":
        stories.push(change);
        break;
      case "reactionAdded":
        await repo.addReaction(tx, change);
        break;
      case "reactionRemoved":
        await repo.takeBackReactions(tx, change.conversationId, change.seq, change);
        break;
      case "messageDeleted":
        await repo.takeBackReactions(tx, change.conversationId, change.seq);
        break;
    }
  }
  await repo.addMessages(tx, messages);
  await repo.addStoryFigures(tx, stories);
}
