/**
 * Rate limiting as the app wires it: the store the config names (Redis when REDIS_URL is set,
 * else this process's memory), the limiter, and its two interceptors. Null when RATE_LIMITS=off.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { RateLimitConfig } from "../config.ts";
import { MemoryRateLimitStore } from "./memory-store.ts";
import { createAuthFailureLimitInterceptor, createWriteLimitInterceptor } from "./rate-limit-interceptor.ts";
import { RateLimiter } from "./rate-limiter.ts";
import { RedisRateLimitStore } from "./redis-store.ts";

/** A check Redis has not answered in this time counts as Redis being down (it answers in well under 1 ms when up). */
const REDIS_TIMEOUT_MS = 200;
/** How long start-up waits for Redis before serving under the store-down policy (it keeps trying). */
const REDIS_CONNECT_WAIT_MS = 2_000;

export interface RateLimiting {
  readonly limiter: RateLimiter;
  /** Goes right before the auth interceptor. */
  readonly authFailureInterceptor: Interceptor;
  /** Goes after the auth (and restriction) interceptors. */
  readonly writeInterceptor: Interceptor;
  close(): Promise<void>;
}

export async function createRateLimiting(config: RateLimitConfig, logger: Logger, registry?: Registry): Promise<RateLimiting | null> {
  if (!config.enabled) return null;
  let store;
  if (config.redisUrl !== null) {
    let lastError = "";
    const redis = new RedisRateLimitStore({
      url: config.redisUrl,
      timeoutMs: REDIS_TIMEOUT_MS,
      onError: (error) => {
        // The client reports every failed reconnect; one line per distinct error is enough.
        if (error.message === lastError) return;
        lastError = error.message;
        logger.warn({ err: error }, "rate limit store (Redis) connection problem");
      },
    });
    if (!(await redis.connect(REDIS_CONNECT_WAIT_MS))) {
      logger.error({ policy: config.storeDown }, "rate limit store (Redis) is not reachable at start-up; serving under RATE_LIMIT_STORE_DOWN until it is");
    }
    store = redis;
  } else {
    store = new MemoryRateLimitStore();
  }
  const limiter = new RateLimiter({
    store,
    limits: { user: config.user, ip: config.ip, authFailures: config.authFailures },
    keyPrefix: config.keyPrefix,
    onStoreDown: config.storeDown,
    logger,
    registry,
  });
  return {
    limiter,
    authFailureInterceptor: createAuthFailureLimitInterceptor(limiter),
    writeInterceptor: createWriteLimitInterceptor(limiter),
    close: () => limiter.close(),
  };
}
