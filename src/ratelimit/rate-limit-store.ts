/** Where token buckets live: in this process (one node), or in a store all nodes share. */
import type { BucketRef, TakeResult } from "./bucket.ts";

export interface RateLimitStore {
  /** "memory" or "redis": for logs and the bench. */
  readonly name: string;
  /**
   * Takes one token from every bucket, atomically: either all of them give one, or none does.
   * Rejects when the store cannot be reached (the limiter then applies its store-down policy).
   */
  take(buckets: readonly BucketRef[]): Promise<TakeResult>;
  close(): Promise<void>;
}
