/**
 * Group commit: concurrent commands queue up, and each transaction writes a whole batch of
 * them, so the cost of a commit (and of the event log's head locks) is shared.
 *
 * Commands are queued in maxInFlight lanes by their key (the event-log partition they write
 * to) modulo the lane count, and each lane runs one batch transaction at a time. Lanes hold
 * disjoint sets of partitions, so this node's batches in flight never wait on each other's
 * head rows, and each batch still gathers a large share of the queue (one lane per partition
 * made batches so small that commits, not work, took the time: measured, see docs/).
 *
 * Each caller still gets its own result: `write` reports an outcome per command, so a
 * command that is not allowed fails alone inside its batch. If the transaction itself fails,
 * every command of the batch is retried on its own, so one bad command never fails its
 * neighbours.
 */
import type { Kysely, Transaction } from "kysely";
import type { StoredEvent } from "../log/event-log.ts";
import type { Database } from "./schema.ts";

/** What one command of a batch came to. */
export type BatchOutcome<R> = { value: R } | { error: Error };

/** Writes a batch in one transaction; returns one outcome per command, in order, and the events it recorded. */
export type BatchWriter<C, R> = (tx: Transaction<Database>, commands: C[]) => Promise<{ outcomes: BatchOutcome<R>[]; events: StoredEvent[] }>;

export interface GroupCommitOptions {
  /** Most commands written by one transaction. */
  maxBatch?: number;
  /** Lanes, each running one batch transaction at a time. */
  maxInFlight?: number;
  /** Called after each commit with the events it recorded (the app publishes them). */
  onCommitted?: (events: StoredEvent[]) => void;
}

interface Pending<C, R> {
  command: C;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

interface Lane<C, R> {
  queue: Pending<C, R>[];
  busy: boolean;
}

export class GroupCommit<C, R> {
  readonly #db: Kysely<Database>;
  readonly #write: BatchWriter<C, R>;
  readonly #keyOf: (command: C) => number;
  readonly #maxBatch: number;
  readonly #onCommitted: (events: StoredEvent[]) => void;
  readonly #lanes: Lane<C, R>[];
  #inFlight = 0;
  #queued = 0;
  #idle: (() => void)[] = [];

  /** `keyOf` gives a command's event-log partition, which picks its lane. */
  constructor(db: Kysely<Database>, write: BatchWriter<C, R>, keyOf: (command: C) => number, options: GroupCommitOptions = {}) {
    this.#db = db;
    this.#write = write;
    this.#keyOf = keyOf;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#lanes = Array.from({ length: options.maxInFlight ?? 2 }, () => ({ queue: [], busy: false }));
    this.#onCommitted = options.onCommitted ?? (() => {});
  }

  /** Queues the command; resolves with its own result once its batch has committed. */
  submit(command: C): Promise<R> {
    return new Promise((resolve, reject) => {
      const lane = this.#lanes[this.#keyOf(command) % this.#lanes.length]!;
      lane.queue.push({ command, resolve, reject });
      this.#queued++;
      this.#pump(lane);
    });
  }

  /** Resolves once every queued command has been written. */
  async drain(): Promise<void> {
    if (this.#inFlight === 0 && this.#queued === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #pump(lane: Lane<C, R>): void {
    if (lane.busy || lane.queue.length === 0) return;
    const batch = lane.queue.splice(0, this.#maxBatch);
    this.#queued -= batch.length;
    this.#inFlight++;
    lane.busy = true;
    void this.#commit(batch).finally(() => {
      this.#inFlight--;
      lane.busy = false;
      this.#pump(lane);
      if (this.#inFlight === 0 && this.#queued === 0) this.#idle.splice(0).forEach((resolve) => resolve());
    });
  }

  async #commit(batch: Pending<C, R>[]): Promise<void> {
    let result: Awaited<ReturnType<BatchWriter<C, R>>>;
    try {
      result = await this.#db.transaction().execute((tx) => this.#write(tx, batch.map((p) => p.command)));
    } catch (error) {
      if (batch.length === 1) return batch[0]!.reject(error);
      for (const pending of batch) await this.#commit([pending]);
      return;
    }
    try {
      if (result.events.length > 0) this.#onCommitted(result.events);
    } catch (error) {
      // The changes are committed and the feed reads the events from PostgreSQL, so a broken
      // hook must not fail the callers.
      process.emitWarning(error instanceof Error ? error : new Error(String(error)), "GroupCommitWarning");
    }
    batch.forEach((pending, i) => {
      const outcome = result.outcomes[i]!;
      if ("error" in outcome) pending.reject(outcome.error);
      else pending.resolve(outcome.value);
    });
  }
}

/** The items with distinct keys, first of each kept (for building a batch's lookups). */
export function uniqueBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(key(item))) seen.set(key(item), item);
  return [...seen.values()];
}
