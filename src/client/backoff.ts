/**
 * Retry pacing shared by the outbox and the feed: exponential with full jitter, so a fleet of
 * clients coming back after an outage does not hit the server in lockstep.
 */

/** Bounds of the retry delay, in milliseconds. */
export interface BackoffOptions {
  /** The first delay (default 250). */
  initialMs?: number;
  /** The longest delay (default 30 000). */
  maxMs?: number;
}

/** The delay before attempt `attempt` (0 = the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Waits `ms`, or less when the signal aborts (then resolves; callers check the signal). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
