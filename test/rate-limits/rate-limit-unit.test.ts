/**
 * The pure parts of the rate limits: bucket arithmetic, the client IP behind proxies, the key
 * of an IPv6 address, and configuration errors that name their variable.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { takeAll, type BucketLimit } from "../../src/ratelimit/bucket.ts";
import { ipBucketKey } from "../../src/ratelimit/ip-key.ts";
import { MemoryRateLimitStore } from "../../src/ratelimit/memory-store.ts";
import { createClientIpResolver } from "../../src/server/client-ip.ts";

describe("token buckets", () => {
  const limit: BucketLimit = { ratePerSecond: 2, burst: 3 };

  it("admits a full burst at once, then one call per refill interval", () => {
    const tats: (number | undefined)[] = [undefined];
    const now = 1_000_000;
    for (let i = 0; i < 3; i++) assert.equal(takeAll(tats, [limit], now).admitted, true);
    const refused = takeAll(tats, [limit], now);
    assert.equal(refused.admitted, false);
    assert.equal(!refused.admitted && refused.retryAfterMs, 500);
    assert.equal(takeAll(tats, [limit], now + 499).admitted, false);
    assert.equal(takeAll(tats, [limit], now + 500).admitted, true);
    assert.equal(takeAll(tats, [limit], now + 500).admitted, false);
  });

  it("refills to the burst and no further after a quiet spell", () => {
    const tats: (number | undefined)[] = [undefined];
    for (let i = 0; i < 3; i++) takeAll(tats, [limit], 0);
    let admitted = 0;
    while (takeAll(tats, [limit], 60_000).admitted) admitted++;
    assert.equal(admitted, 3);
  });

  it("takes from both buckets or from neither, and names the one that is empty", () => {
    const tight: BucketLimit = { ratePerSecond: 1, burst: 1 };
    const tats: (number | undefined)[] = [undefined, undefined];
    assert.equal(takeAll(tats, [limit, tight], 0).admitted, true);
    const before = [...tats];
    const refused = takeAll(tats, [limit, tight], 0);
    assert.deepEqual(refused, { admitted: false, bucket: 1, retryAfterMs: 1000 });
    assert.deepEqual(tats, before, "a refused call leaves the other bucket untouched");
  });

  it("forgets buckets that have refilled completely", () => {
    let now = 0;
    const store = new MemoryRateLimitStore({ now: () => now });
    store.takeNow([{ key: "a", limit }]);
    store.takeNow([{ key: "b", limit: { ratePerSecond: 0.001, burst: 1 } }]);
    now = 1_000;
    store.sweep();
    assert.equal(store.size, 1, "the refilled bucket is gone, the empty one stays");
    void store.close();
  });
});

describe("the client IP", () => {
  const request = (remoteAddress: string | undefined, forwarded?: string) => ({
    headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded },
    socket: { remoteAddress },
  });

  it("is the socket's address by default, even when X-Forwarded-For says otherwise", () => {
    const resolve = createClientIpResolver(0);
    assert.equal(resolve(request("127.0.0.1", "203.0.113.9")), "127.0.0.1");
    assert.equal(resolve(request("::ffff:192.0.2.4")), "192.0.2.4");
    assert.equal(resolve(request(undefined)), "unknown");
  });

  it("behind N trusted proxies, is the N-th forwarded address from the right", () => {
    assert.equal(createClientIpResolver(1)(request("10.0.0.1", "198.51.100.7, 203.0.113.9")), "203.0.113.9");
    assert.equal(createClientIpResolver(2)(request("10.0.0.1", "198.51.100.7, 203.0.113.9")), "198.51.100.7");
    // A client cannot push a forged address past the trusted proxies by adding its own entries.
    assert.equal(createClientIpResolver(1)(request("10.0.0.1", "1.1.1.1, 2.2.2.2, 203.0.113.9")), "203.0.113.9");
  });

  it("takes the left-most forwarded address when there are fewer than the hops, and ignores junk", () => {
    assert.equal(createClientIpResolver(3)(request("10.0.0.1", "203.0.113.9")), "203.0.113.9");
    assert.equal(createClientIpResolver(1)(request("10.0.0.1", "203.0.113.9:4431")), "203.0.113.9");
    assert.equal(createClientIpResolver(1)(request("10.0.0.1", "[2001:db8::1]:443")), "2001:db8::1");
    assert.equal(createClientIpResolver(1)(request("10.0.0.1", "not-an-ip")), "10.0.0.1");
    assert.equal(createClientIpResolver(1)(request("10.0.0.1")), "10.0.0.1");
  });
});

describe("the per-IP bucket key", () => {
  it("is an IPv4 address whole and an IPv6 address by its /64", () => {
    assert.equal(ipBucketKey("203.0.113.9"), "203.0.113.9");
    assert.equal(ipBucketKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    assert.equal(ipBucketKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
    assert.equal(ipBucketKey("::1"), "0:0:0:0::/64");
    assert.equal(ipBucketKey("unknown"), "unknown");
  });
});

describe("rate limit configuration", () => {
  const base = { JWT_SECRET: "x".repeat(32) };

  it("has production defaults: on, in memory, limiting locally while a store is down", () => {
    const config = loadConfig(base);
    assert.equal(config.rateLimits.enabled, true);
    assert.equal(config.rateLimits.redisUrl, null);
    assert.equal(config.rateLimits.storeDown, "local");
    assert.equal(config.trustProxyHops, 0);
    assert.ok(config.rateLimits.user.ratePerSecond >= 20 && config.rateLimits.user.ratePerSecond <= 30);
    assert.ok(config.rateLimits.ip.burst > config.rateLimits.user.burst);
  });

  it("accepts fractional rates and RATE_LIMITS=off", () => {
    const config = loadConfig({ ...base, RATE_LIMIT_AUTH_FAILURES_PER_SECOND: "0.5", RATE_LIMITS: "off", REDIS_URL: "redis://127.0.0.1:6379" });
    assert.equal(config.rateLimits.authFailures.ratePerSecond, 0.5);
    assert.equal(config.rateLimits.enabled, false);
    assert.equal(config.rateLimits.redisUrl, "redis://127.0.0.1:6379");
  });

  for (const [name, value] of [
    ["RATE_LIMITS", "maybe"],
    ["RATE_LIMIT_USER_PER_SECOND", "0"],
    ["RATE_LIMIT_USER_PER_SECOND", "fast"],
    ["RATE_LIMIT_USER_BURST", "2.5"],
    ["RATE_LIMIT_IP_PER_SECOND", "-1"],
    ["RATE_LIMIT_IP_BURST", "0"],
    ["RATE_LIMIT_AUTH_FAILURES_PER_SECOND", "Infinity"],
    ["RATE_LIMIT_AUTH_FAILURES_BURST", "many"],
    ["RATE_LIMIT_STORE_DOWN", "ignore"],
    ["RATE_LIMIT_KEY_PREFIX", "has space"],
    ["REDIS_URL", "http://127.0.0.1:6379"],
    ["TRUST_PROXY_HOPS", "-1"],
  ] as const) {
    it(`refuses ${name}=${value} with a message naming the variable`, () => {
      assert.throws(() => loadConfig({ ...base, [name]: value }), (error: unknown) => error instanceof ConfigError && error.message.includes(name));
    });
  }
});
