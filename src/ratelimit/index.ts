export { type BucketLimit, type BucketRef, type TakeResult } from "./bucket.ts";
export { ipBucketKey } from "./ip-key.ts";
export { MemoryRateLimitStore } from "./memory-store.ts";
export { createAuthFailureLimitInterceptor, createWriteLimitInterceptor } from "./rate-limit-interceptor.ts";
export { type RateLimitStore } from "./rate-limit-store.ts";
export { RateLimiter, type RateLimiterOptions, type RateLimits, type StoreDownPolicy } from "./rate-limiter.ts";
export { createRateLimiting, type RateLimiting } from "./create-rate-limiting.ts";
export { RedisRateLimitStore, type RedisStoreOptions } from "./redis-store.ts";
export { UNREACHABLE_RATE_LIMITS_ENV } from "./unreachable-limits.ts";
