/**
 * Token buckets as GCRA (the generic cell rate algorithm): a bucket's whole state is one number,
 * its theoretical arrival time (TAT). It admits exactly what a token bucket of `burst` tokens
 * refilled at `ratePerSecond` admits, but needs no separate token count and timestamp, so the
 * shared store keeps one small value per bucket and a bucket nobody used for a while simply
 * expires (an absent bucket is a full one).
 *
 * The Redis store runs the same arithmetic in Lua (redis-store.ts); the two must agree.
 */

/** How fast a bucket refills and how many tokens it holds. */
export interface BucketLimit {
  /** Tokens added per second (may be fractional, e.g. 0.5). */
  readonly ratePerSecond: number;
  /** Most tokens the bucket holds: how many calls may come at once after a quiet spell. */
  readonly burst: number;
}

/** One bucket a call must take a token from. */
export interface BucketRef {
  /** The store key, e.g. `parley:rl:u:alice`. */
  readonly key: string;
  readonly limit: BucketLimit;
}

/** The outcome of taking a token from every bucket of a check. */
export type TakeResult = { readonly admitted: true } | { readonly admitted: false; readonly bucket: number; readonly retryAfterMs: number };

export const ADMITTED: TakeResult = Object.freeze({ admitted: true });

/** Milliseconds between two tokens. */
export function intervalMs(limit: BucketLimit): number {
  return 1000 / limit.ratePerSecond;
}

/**
 * Takes one token from each bucket, or from none when any of them is empty (so a refused call
 * never drains the other bucket). `tats` holds each bucket's TAT (undefined = full) and is
 * updated in place when the call is admitted. A refusal names the bucket that is empty for the
 * longest, and how long until it has a token again.
 */
export function takeAll(tats: (number | undefined)[], limits: readonly BucketLimit[], now: number): TakeResult {
  let worst = -1;
  let wait = 0;
  const next: number[] = new Array(limits.length);
  for (let i = 0; i < limits.length; i++) {
    const limit = limits[i]!;
    const interval = intervalMs(limit);
    const tat = Math.max(tats[i] ?? now, now) + interval;
    const allowAt = tat - limit.burst * interval;
    if (allowAt > now && allowAt - now > wait) {
      wait = allowAt - now;
      worst = i;
    }
    next[i] = tat;
  }
  if (worst >= 0) return { admitted: false, bucket: worst, retryAfterMs: wait };
  for (let i = 0; i < next.length; i++) tats[i] = next[i];
  return ADMITTED;
}
