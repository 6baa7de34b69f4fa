/**
 * Durable consumers: the contract between background work (notifier, search indexer, story
 * expiry) and the runtime that feeds it — JetStream when NATS is configured, the in-process
 * bus in embedded mode. Handlers see batches and answer with one outcome per delivery.
 */

/** What became of one delivery: done (acked), to be retried later, or never processable. */
export type Outcome = "done" | { retryAfterMs: number } | { poison: string };

export interface Delivered<T> {
  /** What decode() returned. */
  readonly value: T;
  /** The subject it was published on. */
  readonly subject: string;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
}

export interface ConsumerSpec<T> {
  /** Durable name, unique per kind of consumer ("notifier", "search-indexer", "story-expiry"). */
  name: string;
  /** One subject filter (nats-server 2.9 allows one), inside the events or the work stream. */
  filterSubject: string;
  /** Bytes → value. Throwing marks the delivery as poison: it is terminated and logged. */
  decode(data: Uint8Array, headers: ReadonlyMap<string, string>): T;
  /**
   * Handles up to batchSize deliveries and returns one Outcome per delivery, in order.
   * Throwing is a transient failure of the whole batch: each delivery comes back after a
   * backoff. Deliveries can repeat (crash, redelivery, relay republish): be idempotent.
   */
  handle(batch: readonly Delivered<T>[]): Promise<Outcome[]>;
  /** Most deliveries per handle() call; default 64. */
  batchSize?: number;
  /** Failed (thrown) deliveries are terminated and logged after this many; default 20. */
  maxDeliver?: number;
  /**
   * JetStream only: how long a delivery may stay unsettled before it is redelivered (default
   * 10 s). Also how long work in hand waits after a node dies. Handlers are idempotent, so a
   * short one only risks a harmless repeat of a slow batch.
   */
  ackWaitMs?: number;
}

export interface Consumer {
  /** Stops taking deliveries and waits for the batch in hand. */
  stop(): Promise<void>;
}

export interface WorkerRuntime {
  /** Starts a consumer (creating its durable state if needed); resolves once it is listening. */
  startConsumer<T>(spec: ConsumerSpec<T>): Promise<Consumer>;
  /** Publishes a work item (subject under `<prefix>.work.>`), stored once per msgId. */
  publishWork(subject: string, data: Uint8Array, msgId: string): Promise<void>;
  /** Stops every consumer still running. */
  close(): Promise<void>;
}

export const DEFAULT_BATCH_SIZE = 64;
export const DEFAULT_MAX_DELIVER = 20;
