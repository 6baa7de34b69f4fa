/**
 * Decides whether a call may go ahead: one token from the caller's write bucket and one from
 * their IP's, or (for a failed sign-in) one from the IP's auth-failure bucket. Refusals throw
 * RateLimitedError, which errors.ts maps to RESOURCE_EXHAUSTED with RetryInfo.
 *
 * Two things keep the shared store off the hot path where it is not needed:
 * - a refusal is remembered on this node until its retry time (no bucket can refill sooner),
 *   so a client hammering past its limit costs this node a map lookup, not a round trip;
 * - while the store is unreachable the node stops asking it for STORE_RETRY_MS at a time and
 *   applies the store-down policy instead (see StoreDownPolicy), logging the change once.
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { RateLimitedError, UnavailableError } from "../errors.ts";
import { ADMITTED, type BucketLimit, type BucketRef, type TakeResult } from "./bucket.ts";
import { ipBucketKey } from "./ip-key.ts";
import { MemoryRateLimitStore } from "./memory-store.ts";
import type { RateLimitStore } from "./rate-limit-store.ts";

/**
 * What a node does while the shared store is unreachable:
 * - "local": limit with buckets in this node's memory (each node limits on its own, so the
 *   deployment admits up to N× the limit across N nodes) — the default: writes keep working
 *   and no one gets unlimited writes;
 * - "open": admit every call (no limits until the store is back);
 * - "closed": refuse every limited call with UNAVAILABLE.
 */
export type StoreDownPolicy = "local" | "open" | "closed";

export interface RateLimits {
  /** Writes per user (all RPCs that are not NO_SIDE_EFFECTS). */
  readonly user: BucketLimit;
  /** Writes per client IP (per /64 for IPv6), all users behind it together. */
  readonly ip: BucketLimit;
  /** Failed authentications (missing, invalid or expired token) per client IP. */
  readonly authFailures: BucketLimit;
}

export interface RateLimiterOptions {
  store: RateLimitStore;
  limits: RateLimits;
  /** Starts every bucket key, so deployments (and test runs) sharing one store never share buckets. */
  keyPrefix: string;
  onStoreDown: StoreDownPolicy;
  logger: Logger;
  /** Where the refusal and store-error counters are registered. */
  registry?: Registry;
  /** The clock, in milliseconds. */
  now?: () => number;
}

/** How long a node leaves an unreachable store alone before trying it again. */
const STORE_RETRY_MS = 1_000;
/** Refusals remembered at most; the memory starts over beyond that. */
const MAX_REMEMBERED_REFUSALS = 100_000;

export class RateLimiter {
  readonly #store: RateLimitStore;
  readonly #limits: RateLimits;
  readonly #prefix: string;
  readonly #policy: StoreDownPolicy;
  readonly #logger: Logger;
  readonly #now: () => number;
  /** This node's own buckets while a shared store is down (policy "local"). */
  readonly #fallback: MemoryRateLimitStore | null;
  /** Bucket key → the time it next has a token, for buckets this node saw refuse. */
  readonly #refusedUntil = new Map<string, number>();
  #storeDownUntil = 0;
  #storeDown = false;
  readonly #refusals: Counter | null;
  readonly #storeErrors: Counter | null;

  constructor(options: RateLimiterOptions) {
    this.#store = options.store;
    this.#limits = options.limits;
    this.#prefix = options.keyPrefix;
    this.#policy = options.onStoreDown;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#fallback = options.store instanceof MemoryRateLimitStore || options.onStoreDown !== "local" ? null : new MemoryRateLimitStore({ now: this.#now });
    const registers = options.registry ? [options.registry] : [];
    this.#refusals = options.registry
      ? new Counter({ name: "parley_rate_limit_refusals_total", help: "Calls refused by a rate limit, by bucket and what it limits", labelNames: ["bucket", "limits"], registers })
      : null;
    this.#storeErrors = options.registry
      ? new Counter({ name: "parley_rate_limit_store_errors_total", help: "Rate limit checks the shared store failed to answer (the store-down policy answered them)", registers })
      : null;
  }

  /** Where buckets live: "memory" or "redis". */
  get storeName(): string {
    return this.#store.name;
  }

  /** Takes a token from the user's and the IP's write buckets, or throws RateLimitedError. */
  async checkWrite(userId: string, ip: string): Promise<void> {
    const user: BucketRef = { key: `${this.#prefix}:u:${userId}`, limit: this.#limits.user };
    const address: BucketRef = { key: `${this.#prefix}:ip:${ipBucketKey(ip)}`, limit: this.#limits.ip };
    const now = this.#now();
    const userWait = this.#remembered(user.key, now);
    const ipWait = this.#remembered(address.key, now);
    if (userWait > 0 || ipWait > 0) throw this.#refused(userWait >= ipWait ? "user" : "ip", "writes", Math.max(userWait, ipWait));
    const result = await this.#take([user, address]);
    if (!result.admitted) {
      const bucket = result.bucket === 0 ? user : address;
      this.#remember(bucket.key, now + result.retryAfterMs);
      throw this.#refused(result.bucket === 0 ? "user" : "ip", "writes", result.retryAfterMs);
    }
  }

  /**
   * Records a failed authentication from ip. Throws RateLimitedError when the IP has no
   * failures left, and from then on (on this node) authRetryAfter tells how long it must wait.
   */
  async chargeAuthFailure(ip: string): Promise<void> {
    const bucket: BucketRef = { key: `${this.#prefix}:af:${ipBucketKey(ip)}`, limit: this.#limits.authFailures };
    const now = this.#now();
    const result = await this.#take([bucket]);
    if (!result.admitted) {
      this.#remember(bucket.key, now + result.retryAfterMs);
      throw this.#refused("ip", "auth_failures", result.retryAfterMs);
    }
  }

  /** Milliseconds until ip may try to authenticate again, as far as this node knows (0: now). */
  authRetryAfter(ip: string): number {
    if (this.#refusedUntil.size === 0) return 0;
    return this.#remembered(`${this.#prefix}:af:${ipBucketKey(ip)}`, this.#now());
  }

  /** A RateLimitedError for a refusal this node remembers (counted like any refusal). */
  refusedAuth(retryAfterMs: number): RateLimitedError {
    return this.#refused("ip", "auth_failures", retryAfterMs);
  }

  async close(): Promise<void> {
    await this.#store.close();
    await this.#fallback?.close();
  }

  async #take(buckets: BucketRef[]): Promise<TakeResult> {
    const now = this.#now();
    if (now >= this.#storeDownUntil) {
      try {
        const result = await this.#store.take(buckets);
        if (this.#storeDown) {
          this.#storeDown = false;
          this.#logger.warn({ store: this.#store.name }, "rate limit store is reachable again: limits are shared across nodes again");
        }
        return result;
      } catch (error) {
        this.#storeErrors?.inc();
        this.#storeDownUntil = this.#now() + STORE_RETRY_MS;
        if (!this.#storeDown) {
          this.#storeDown = true;
          this.#logger.error({ err: error, store: this.#store.name, policy: this.#policy }, `rate limit store is unreachable: ${POLICY_TEXT[this.#policy]} until it is back`);
        }
      }
    }
    switch (this.#policy) {
      case "local":
        return this.#fallback ? this.#fallback.takeNow(buckets) : ADMITTED;
      case "open":
        return ADMITTED;
      case "closed":
        throw new UnavailableError("rate limiting is unavailable; try again shortly", "RATE_LIMIT_STORE_UNAVAILABLE");
    }
  }

  #remembered(key: string, now: number): number {
    const until = this.#refusedUntil.get(key);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.#refusedUntil.delete(key);
    return 0;
  }

  #remember(key: string, until: number): void {
    if (this.#refusedUntil.size >= MAX_REMEMBERED_REFUSALS) this.#refusedUntil.clear();
    this.#refusedUntil.set(key, until);
  }

  #refused(bucket: "user" | "ip", limits: "writes" | "auth_failures", retryAfterMs: number): RateLimitedError {
    this.#refusals?.inc({ bucket, limits });
    return new RateLimitedError(bucket, limits, retryAfterMs);
  }
}

const POLICY_TEXT: Record<StoreDownPolicy, string> = {
  local: "each node limits with its own buckets",
  open: "calls are not limited",
  closed: "limited calls are refused with UNAVAILABLE",
};
