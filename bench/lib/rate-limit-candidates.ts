/**
 * The shared bucket stores that were measured and not kept (bench:ratelimit runs them beside the
 * kept ones, so the choice in docs/rate-limits.md can be checked again on any machine):
 *
 * - PostgreSQL: one function call per check (an UNLOGGED table, rows locked in key order, the
 *   server's clock). Atomic over both buckets, but every check is a round trip and a write
 *   transaction on the database that also carries every send.
 * - NATS JetStream KV: get, compute, then update with the revision (compare-and-set), retried
 *   on conflict. A KV has no multi-key transaction, so the user and IP buckets are taken one
 *   after the other (a refusal by the second gives the first its token back, by another CAS),
 *   on the clients' clocks.
 *
 * Both implement the RateLimitStore interface with the same GCRA arithmetic as src/ratelimit.
 */
import { connect, type KV, type NatsConnection } from "nats";
import pg from "pg";
import { ADMITTED, intervalMs, takeAll, type BucketRef, type TakeResult } from "../../src/ratelimit/bucket.ts";
import type { RateLimitStore } from "../../src/ratelimit/rate-limit-store.ts";

const TAKE_FUNCTION = `
create unlogged table if not exists rate_buckets (key text primary key, tat double precision not null);
create or replace function rate_take(keys text[], intervals float8[], bursts float8[]) returns float8[]
language plpgsql as $$
declare
  now_ms float8 := extract(epoch from clock_timestamp()) * 1000;
  n int := array_length(keys, 1);
  tats float8[] := array_fill(0::float8, array[n]);
  t float8;
  allow float8;
  worst int := 0;
  wait float8 := 0;
begin
  insert into rate_buckets (key, tat) select k, 0 from unnest(keys) as k order by k on conflict do nothing;
  perform 1 from rate_buckets where key = any(keys) order by key for update;
  for i in 1..n loop
    select tat into t from rate_buckets where key = keys[i];
    t := greatest(t, now_ms) + intervals[i];
    allow := t - bursts[i] * intervals[i];
    if allow > now_ms and allow - now_ms > wait then
      wait := allow - now_ms;
      worst := i;
    end if;
    tats[i] := t;
  end loop;
  if worst > 0 then
    return array[worst, wait];
  end if;
  for i in 1..n loop
    update rate_buckets set tat = tats[i] where key = keys[i];
  end loop;
  return array[0, 0];
end $$;
`;

export class PostgresRateLimitStore implements RateLimitStore {
  readonly name = "postgres";
  readonly #pool: pg.Pool;
  private constructor(pool: pg.Pool) {
    this.#pool = pool;
  }
  static async open(url: string, poolSize: number): Promise<PostgresRateLimitStore> {
    const pool = new pg.Pool({ connectionString: url, max: poolSize });
    await pool.query(TAKE_FUNCTION);
    return new PostgresRateLimitStore(pool);
  }
  async take(buckets: readonly BucketRef[]): Promise<TakeResult> {
    const res = await this.#pool.query({
      text: "select rate_take($1, $2, $3) as r",
      values: [buckets.map((b) => b.key), buckets.map((b) => intervalMs(b.limit)), buckets.map((b) => b.limit.burst)],
      rowMode: "array",
    });
    const [worst, wait] = (res.rows[0] as [number[]])[0].map(Number) as [number, number];
    return worst === 0 ? ADMITTED : { admitted: false, bucket: worst - 1, retryAfterMs: wait };
  }
  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/** Most compare-and-set attempts per bucket before a check gives up. */
const MAX_CAS_ATTEMPTS = 50;

export class NatsKvRateLimitStore implements RateLimitStore {
  readonly name = "nats-kv";
  readonly #nc: NatsConnection;
  readonly #kv: KV;
  /** Compare-and-set conflicts seen (each one is another round trip pair). */
  conflicts = 0;
  private constructor(nc: NatsConnection, kv: KV) {
    this.#nc = nc;
    this.#kv = kv;
  }
  static async open(url: string, bucket: string): Promise<NatsKvRateLimitStore> {
    const nc = await connect({ servers: url, timeout: 2_000 });
    const kv = await nc.jetstream().views.kv(bucket, { history: 1 });
    return new NatsKvRateLimitStore(nc, kv);
  }
  async take(buckets: readonly BucketRef[]): Promise<TakeResult> {
    const taken: BucketRef[] = [];
    for (let i = 0; i < buckets.length; i++) {
      const ref = buckets[i]!;
      const result = await this.#takeOne(ref);
      if (!result.admitted) {
        for (const earlier of taken) await this.#giveBack(earlier);
        return { admitted: false, bucket: i, retryAfterMs: result.retryAfterMs };
      }
      taken.push(ref);
    }
    return ADMITTED;
  }
  async #takeOne(ref: BucketRef): Promise<TakeResult> {
    const key = natsKey(ref.key);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const entry = await this.#kv.get(key);
      const tats = [entry && entry.operation === "PUT" ? Number(entry.string()) : undefined];
      const result = takeAll(tats, [ref.limit], Date.now());
      if (!result.admitted) return result;
      try {
        if (entry) await this.#kv.update(key, String(tats[0]), entry.revision);
        else await this.#kv.create(key, String(tats[0]));
        return ADMITTED;
      } catch {
        this.conflicts++;
      }
    }
    throw new Error(`nats-kv: gave up on ${key} after ${MAX_CAS_ATTEMPTS} conflicts`);
  }
  async #giveBack(ref: BucketRef): Promise<void> {
    const key = natsKey(ref.key);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const entry = await this.#kv.get(key);
      if (!entry) return;
      try {
        await this.#kv.update(key, String(Number(entry.string()) - intervalMs(ref.limit)), entry.revision);
        return;
      } catch {
        this.conflicts++;
      }
    }
  }
  async close(): Promise<void> {
    await this.#kv.destroy().catch(() => {});
    await this.#nc.close();
  }
  /** Closes the connection but leaves the bucket (for a worker process sharing it). */
  async disconnect(): Promise<void> {
    await this.#nc.close();
  }
}

/** KV keys allow letters, digits and - / _ = . only. */
function natsKey(key: string): string {
  return key.replace(/[^-/_=.A-Za-z0-9]/g, (c) => `=${c.charCodeAt(0).toString(16)}`);
}
