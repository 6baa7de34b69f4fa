/**
 * Token buckets in this process's memory: the embedded default (one node), and the fallback a
 * node uses on its own while the shared store is down. A check costs well under a microsecond.
 */
import { takeAll, type BucketRef, type TakeResult } from "./bucket.ts";
import type { RateLimitStore } from "./rate-limit-store.ts";

/** How often full (expired) buckets are forgotten, so memory follows the active callers. */
const SWEEP_INTERVAL_MS = 30_000;

export interface MemoryStoreOptions {
  /** The clock, in milliseconds (tests move it by hand). */
  now?: () => number;
}

export class MemoryRateLimitStore implements RateLimitStore {
  readonly name = "memory";
  readonly #tats = new Map<string, number>();
  readonly #now: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
  }

  /** Synchronous take, for callers that know the store is in-process. */
  takeNow(buckets: readonly BucketRef[]): TakeResult {
    const now = this.#now();
    const tats = buckets.map((b) => this.#tats.get(b.key));
    const result = takeAll(tats, buckets.map((b) => b.limit), now);
    if (result.admitted) for (let i = 0; i < buckets.length; i++) this.#tats.set(buckets[i]!.key, tats[i]!);
    return result;
  }

  take(buckets: readonly BucketRef[]): Promise<TakeResult> {
    return Promise.resolve(this.takeNow(buckets));
  }

  /** Forgets buckets that have refilled completely (a missing bucket is a full one). */
  sweep(): void {
    const now = this.#now();
    for (const [key, tat] of this.#tats) if (tat <= now) this.#tats.delete(key);
  }

  /** Buckets currently remembered. */
  get size(): number {
    return this.#tats.size;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#tats.clear();
  }
}
