/**
 * Group commit: concurrent commands queue up, and each transaction writes a whole batch of
 * them, so the cost of a commit (and of the event log's head lock) is shared.
 *
 * Commands are queued in lanes (one per event-log partition): a batch holds commands of one
 * lane, so it takes one partition's head, and batches of different lanes never queue on the
 * same head row. Up to maxInFlight batch transactions run at once, each on its own pool
 * connection, at most maxInFlightPerLane of them in one lane; lanes take turns.
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
  /** Most batch transactions running at once. */
  maxInFlight?: number;
  /** Most batch transactions of one lane running at once. */
  maxInFlightPerLane?: number;
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
  inFlight: number;
  /** In the ready list (has queued commands and room for another batch). */
  ready: boolean;
}

export class GroupCommit<C, R> {
  readonly #db: Kysely<Database>;
  readonly #write: BatchWriter<C, R>;
  readonly #laneOf: (command: C) => number;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #maxInFlightPerLane: number;
  readonly #onCommitted: (events: StoredEvent[]) => void;
  readonly #lanes = new Map<number, Lane<C, R>>();
  /** Lanes with work and room, in the order they became ready (so they take turns). */
  #ready: Lane<C, R>[] = [];
  #inFlight = 0;
  #queued = 0;
  #idle: (() => void)[] = [];

  /** `laneOf` names a command's lane (its event-log partition). */
  constructor(db: Kysely<Database>, write: BatchWriter<C, R>, laneOf: (command: C) => number, options: GroupCommitOptions = {}) {
    this.#db = db;
    this.#write = write;
    this.#laneOf = laneOf;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#maxInFlightPerLane = options.maxInFlightPerLane ?? 1;
    this.#onCommitted = options.onCommitted ?? (() => {});
  }

  /** Queues the command; resolves with its own result once its batch has committed. */
  submit(command: C): Promise<R> {
    return new Promise((resolve, reject) => {
      const key = this.#laneOf(command);
      let lane = this.#lanes.get(key);
      if (!lane) this.#lanes.set(key, (lane = { queue: [], inFlight: 0, ready: false }));
      lane.queue.push({ command, resolve, reject });
      this.#queued++;
      this.#markReady(lane);
      this.#pump();
    });
  }

  /** Resolves once every queued command has been written. */
  async drain(): Promise<void> {
    if (this.#inFlight === 0 && this.#queued === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #markReady(lane: Lane<C, R>): void {
    if (lane.ready || lane.queue.length === 0 || lane.inFlight >= this.#maxInFlightPerLane) return;
    lane.ready = true;
    this.#ready.push(lane);
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#ready.length > 0) {
      const lane = this.#ready.shift()!;
      lane.ready = false;
      const batch = lane.queue.splice(0, this.#maxBatch);
      this.#queued -= batch.length;
      this.#inFlight++;
      lane.inFlight++;
      this.#markReady(lane);
      void this.#commit(batch).finally(() => {
        this.#inFlight--;
        lane.inFlight--;
        this.#markReady(lane);
        this.#pump();
        if (this.#inFlight === 0 && this.#queued === 0) this.#idle.splice(0).forEach((resolve) => resolve());
      });
    }
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
