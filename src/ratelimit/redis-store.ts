/**
 * Token buckets in Redis, shared by every node. One Lua script takes a token from every bucket
 * of a check (the user's and the IP's) atomically, on Redis's clock, so nodes whose clocks
 * disagree still share one notion of time and two nodes racing for the last token cannot both
 * get it. The arithmetic is bucket.ts's (GCRA: one number per bucket, which expires when the
 * bucket is full again).
 *
 * Checks are group-committed like sends: while a script call is in flight, new checks queue, and
 * the next call carries all of them (one EVALSHA, one round trip, one reply). An idle node sends
 * each check at once; a busy one pays one round trip for dozens. See docs/rate-limits.md.
 */
import { createClient, defineScript } from "@redis/client";
import type { BucketRef, TakeResult } from "./bucket.ts";
import { ADMITTED, intervalMs } from "./bucket.ts";
import type { RateLimitStore } from "./rate-limit-store.ts";

/**
 * ARGV[1] = number of checks; then per check: its bucket count k, then k pairs (interval ms,
 * burst). KEYS = every check's bucket keys, in order. Returns two integers per check: 0, 0 when
 * admitted; else the 1-based bucket that is empty for longest and the wait in microseconds.
 * Checks run in order, so two checks of one batch on the same bucket see each other.
 */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local out = {}
local a = 2
local base = 0
for c = 1, tonumber(ARGV[1]) do
  local k = tonumber(ARGV[a])
  a = a + 1
  local worst, wait = 0, 0
  local nexts = {}
  for i = 1, k do
    local interval = tonumber(ARGV[a])
    local burst = tonumber(ARGV[a + 1])
    a = a + 2
    local tat = tonumber(redis.call('GET', KEYS[base + i])) or now
    if tat < now then tat = now end
    tat = tat + interval
    local allow = tat - burst * interval
    if allow > now and allow - now > wait then
      wait = allow - now
      worst = i
    end
    nexts[i] = tat
  end
  if worst > 0 then
    out[#out + 1] = worst
    out[#out + 1] = math.ceil(wait * 1000)
  else
    for i = 1, k do
      redis.call('SET', KEYS[base + i], string.format('%.3f', nexts[i]), 'PX', math.max(1, math.ceil(nexts[i] - now)))
    end
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
  base = base + k
end
return out
`;

const SCRIPT = defineScript({
  SCRIPT: TAKE_SCRIPT,
  // The number of keys varies with the batch, so it is pushed here (no fixed NUMBER_OF_KEYS).
  parseCommand(parser, keys: string[], args: string[]) {
    parser.push(String(keys.length));
    parser.pushKeys(keys);
    parser.push(...args);
  },
  transformReply: undefined as unknown as () => number[],
});

export interface RedisStoreOptions {
  url: string;
  /** A check not answered within this time fails (the limiter then applies its store-down policy). */
  timeoutMs: number;
  /**
   * Script calls in flight at once; further checks wait and go together in the next call.
   * 1 batches the most; more lowers latency under load. Default 2.
   */
  maxInFlight?: number;
  /** Most checks in one script call. */
  maxBatch?: number;
  /** Connection problems (the client reconnects by itself). */
  onError?: (error: Error) => void;
}

interface Pending {
  buckets: readonly BucketRef[];
  resolve(result: TakeResult): void;
  reject(error: unknown): void;
}

export class RedisRateLimitStore implements RateLimitStore {
  readonly name = "redis";
  readonly #client;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #inFlight = 0;
  /** Script calls made and checks sent in them (the bench reports checks per call). */
  calls = 0;
  checks = 0;

  constructor(options: RedisStoreOptions) {
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#maxBatch = options.maxBatch ?? 256;
    this.#client = createClient({
      url: options.url,
      // A check must fail fast while Redis is away, not wait in a queue for it to come back.
      disableOfflineQueue: true,
      scripts: { take: SCRIPT },
      commandOptions: { timeout: options.timeoutMs, rejectInFlight: true },
      socket: { connectTimeout: 2_000, reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 2_000) },
    });
    this.#client.on("error", (error: Error) => options.onError?.(error));
  }

  /**
   * Connects, waiting at most waitMs: a node starts even when Redis is down (it keeps trying in
   * the background, and checks fail until then). Resolves true when connected.
   */
  async connect(waitMs: number): Promise<boolean> {
    const connected = this.#client.connect().then(
      () => true,
      () => false,
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
    try {
      return await Promise.race([connected, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  take(buckets: readonly BucketRef[]): Promise<TakeResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ buckets, resolve, reject });
      if (this.#inFlight < this.#maxInFlight) this.#flush();
    });
  }

  #flush(): void {
    const batch = this.#queue.length <= this.#maxBatch ? this.#queue : this.#queue.slice(0, this.#maxBatch);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(this.#maxBatch);
    const keys: string[] = [];
    const args: string[] = [String(batch.length)];
    for (const check of batch) {
      args.push(String(check.buckets.length));
      for (const bucket of check.buckets) {
        keys.push(bucket.key);
        args.push(String(intervalMs(bucket.limit)), String(bucket.limit.burst));
      }
    }
    this.#inFlight++;
    this.calls++;
    this.checks += batch.length;
    this.#client.take(keys, args).then(
      (reply) => {
        for (let i = 0; i < batch.length; i++) {
          const bucket = Number(reply[2 * i]);
          batch[i]!.resolve(bucket === 0 ? ADMITTED : { admitted: false, bucket: bucket - 1, retryAfterMs: Number(reply[2 * i + 1]) / 1000 });
        }
      },
      (error: unknown) => batch.forEach((check) => check.reject(error)),
    ).finally(() => {
      this.#inFlight--;
      if (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) this.#flush();
    });
  }

  async close(): Promise<void> {
    // Checks still queued fail like any other store error (the limiter's policy answers them).
    const queued = this.#queue;
    this.#queue = [];
    for (const check of queued) check.reject(new Error("the rate limit store was closed"));
    this.#client.destroy();
  }
}
