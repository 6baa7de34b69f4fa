/**
 * The part of every consumer loop that does not depend on the transport: decode, hand a batch
 * to the handler, and settle each delivery by its outcome. Batches run one at a time, in
 * arrival order, so a consumer never races itself.
 */
import type { Logger } from "pino";
import { DEFAULT_BATCH_SIZE, DEFAULT_MAX_DELIVER, type ConsumerSpec, type Delivered, type Outcome } from "./consumer.ts";

/** A delivery as the transport hands it over, with the ways to settle it. */
export interface RawDelivery {
  readonly data: Uint8Array;
  readonly headers: ReadonlyMap<string, string>;
  readonly subject: string;
  readonly deliveryCount: number;
  ack(): void;
  retry(delayMs: number): void;
  terminate(reason: string): void;
}

/** Backoff after a thrown (transient) failure: 0.5 s doubling up to 30 s. */
export function failureBackoffMs(deliveryCount: number): number {
  return Math.min(30_000, 500 * 2 ** Math.max(0, deliveryCount - 1));
}

export async function runBatch<T>(spec: ConsumerSpec<T>, raws: readonly RawDelivery[], logger: Logger): Promise<void> {
  const decoded: Array<{ raw: RawDelivery; delivered: Delivered<T> }> = [];
  for (const raw of raws) {
    try {
      decoded.push({ raw, delivered: { value: spec.decode(raw.data, raw.headers), subject: raw.subject, deliveryCount: raw.deliveryCount } });
    } catch (error) {
      logger.error({ err: error, consumer: spec.name, subject: raw.subject }, "undecodable delivery terminated");
      raw.terminate("undecodable");
    }
  }
  if (decoded.length === 0) return;

  let outcomes: Outcome[];
  try {
    outcomes = await spec.handle(decoded.map((d) => d.delivered));
    if (outcomes.length !== decoded.length) throw new Error(`handler returned ${outcomes.length} outcomes for ${decoded.length} deliveries`);
  } catch (error) {
    const maxDeliver = spec.maxDeliver ?? DEFAULT_MAX_DELIVER;
    logger.warn({ err: error, consumer: spec.name, size: decoded.length }, "consumer batch failed; retrying later");
    for (const { raw } of decoded) {
      if (raw.deliveryCount >= maxDeliver) {
        logger.error({ consumer: spec.name, subject: raw.subject, deliveries: raw.deliveryCount }, "delivery failed too often; terminated");
        raw.terminate("failed too often");
      } else {
        raw.retry(failureBackoffMs(raw.deliveryCount));
      }
    }
    return;
  }
  outcomes.forEach((outcome, i) => {
    const { raw } = decoded[i]!;
    if (outcome === "done") raw.ack();
    else if ("retryAfterMs" in outcome) raw.retry(Math.max(0, outcome.retryAfterMs));
    else {
      logger.error({ consumer: spec.name, subject: raw.subject, reason: outcome.poison }, "poison delivery terminated");
      raw.terminate(outcome.poison);
    }
  });
}

/**
 * Collects deliveries as they arrive and runs them through runBatch one batch at a time:
 * whatever queued up while a batch ran becomes the next batch (up to batchSize).
 */
export class BatchQueue<T> {
  readonly #spec: ConsumerSpec<T>;
  readonly #logger: Logger;
  readonly #pending: RawDelivery[] = [];
  #running: Promise<void> | null = null;

  constructor(spec: ConsumerSpec<T>, logger: Logger) {
    this.#spec = spec;
    this.#logger = logger;
  }

  push(raw: RawDelivery): void {
    this.#pending.push(raw);
    this.#running ??= this.#drain().finally(() => (this.#running = null));
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #drain(): Promise<void> {
    // Let deliveries that arrived in the same tick join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const size = this.#spec.batchSize ?? DEFAULT_BATCH_SIZE;
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, size);
      try {
        await runBatch(this.#spec, batch, this.#logger);
      } catch (error) {
        // runBatch settles every delivery itself; reaching here is a bug in settling.
        this.#logger.error({ err: error, consumer: this.#spec.name }, "consumer batch could not be settled");
      }
    }
  }
}
