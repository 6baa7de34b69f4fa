/**
 * `npm run bench:ratelimit -- [--stores memory,redis,redis-unbatched,postgres,nats-kv] [--seconds 3] ...`
 *
 * Where should the token buckets live? Measures each candidate store behind the same
 * RateLimitStore interface, with the same check a write makes (a user bucket and an IP bucket,
 * taken together):
 *
 * 1. latency: --sequential checks one after another (p50/p99), and the client CPU per check;
 * 2. throughput: --concurrency checks in flight for --seconds, checks/s, client CPU per check
 *    and the store server's CPU per check (redis-server, postgres or nats-server from /proc);
 * 3. contention: two worker processes hammer one bucket (burst --burst, --rate per second) for
 *    --contention-seconds; the sum they were admitted must stay within burst + rate × elapsed.
 *    The memory store is in each process's own memory, so there it shows what "not shared" means.
 *
 * Stores: memory (src/ratelimit, the embedded default), redis (src/ratelimit: one Lua script,
 * checks group-committed while a call is in flight), redis-unbatched (the same script, one
 * EVALSHA per check, pipelined by the client), postgres and nats-kv (bench/lib/rate-limit-candidates.ts).
 * Everything is bounded in time, on 127.0.0.1 only, and cleaned up (keys, database, KV bucket).
 *
 * Flags: --redis-url (default redis://127.0.0.1:6379) --database-url --nats-url --pool-size 8
 *        --sequential 2000 --concurrency 64 --users 10000 --burst 50 --rate 100 --json FILE
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { BucketLimit, BucketRef } from "../src/ratelimit/bucket.ts";
import { MemoryRateLimitStore } from "../src/ratelimit/memory-store.ts";
import type { RateLimitStore } from "../src/ratelimit/rate-limit-store.ts";
import { RedisRateLimitStore } from "../src/ratelimit/redis-store.ts";
import { createBenchDatabase } from "./lib/database.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { natsServerPid } from "./lib/nats.ts";
import { cpuByComm, minus, procCpu, type Cpu, ZERO, plus } from "./lib/proc.ts";
import { NatsKvRateLimitStore, PostgresRateLimitStore } from "./lib/rate-limit-candidates.ts";
import { Samples } from "./lib/stats.ts";
import { intFlag, printHelp, requireLocalUrl, round, sleep } from "./lib/util.ts";

const ALL_STORES = ["memory", "redis", "redis-unbatched", "postgres", "nats-kv"] as const;
type StoreName = (typeof ALL_STORES)[number];

const { values: flags } = parseArgs({
  options: {
    stores: { type: "string", default: ALL_STORES.join(",") },
    seconds: { type: "string", default: "3" },
    "contention-seconds": { type: "string", default: "3" },
    sequential: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "64" },
    users: { type: "string", default: "10000" },
    burst: { type: "string", default: "50" },
    rate: { type: "string", default: "100" },
    "pool-size": { type: "string", default: "8" },
    "redis-url": { type: "string", default: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379" },
    "database-url": { type: "string", default: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
    "nats-url": { type: "string", default: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
    // Internal: a contention worker (see contention()).
    worker: { type: "string" },
    target: { type: "string" },
    "start-at": { type: "string" },
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}

const SECONDS = intFlag("seconds", flags.seconds, 1, 600);
const CONTENTION_SECONDS = intFlag("contention-seconds", flags["contention-seconds"], 1, 600);
const SEQUENTIAL = intFlag("sequential", flags.sequential, 1, 1_000_000);
const CONCURRENCY = intFlag("concurrency", flags.concurrency, 1, 10_000);
const USERS = intFlag("users", flags.users, 1, 10_000_000);
const BURST = intFlag("burst", flags.burst, 1, 1_000_000);
const RATE = intFlag("rate", flags.rate, 1, 1_000_000);
const POOL_SIZE = intFlag("pool-size", flags["pool-size"], 1, 100);
const REDIS_URL = flags["redis-url"];
const NATS_URL = flags["nats-url"];
const DATABASE_URL = flags["database-url"];
requireLocalUrl("redis-url", REDIS_URL);
requireLocalUrl("nats-url", NATS_URL);
requireLocalUrl("database-url", DATABASE_URL);
const STORES = flags.stores.split(",").map((s) => s.trim()) as StoreName[];
for (const store of STORES) if (!ALL_STORES.includes(store)) throw new Error(`unknown store ${store}; known: ${ALL_STORES.join(", ")}`);

/** Limits no check of the latency and throughput phases ever reaches: every check is admitted and writes. */
const OPEN: BucketLimit = { ratePerSecond: 1e6, burst: 1e9 };
const CONTENDED: BucketLimit = { ratePerSecond: RATE, burst: BURST };

/** Where a store's shared state lives (passed to contention workers so they open the same one). */
interface Target {
  store: StoreName;
  prefix: string;
  databaseUrl?: string;
  kvBucket?: string;
}

async function openStore(target: Target): Promise<RateLimitStore> {
  switch (target.store) {
    case "memory":
      return new MemoryRateLimitStore();
    case "redis":
    case "redis-unbatched": {
      const store = new RedisRateLimitStore({
        url: REDIS_URL,
        timeoutMs: 5_000,
        ...(target.store === "redis-unbatched" ? { maxBatch: 1, maxInFlight: Number.MAX_SAFE_INTEGER } : {}),
      });
      if (!(await store.connect(5_000))) throw new Error(`Redis at ${REDIS_URL} is not reachable`);
      return store;
    }
    case "postgres":
      return PostgresRateLimitStore.open(target.databaseUrl!, POOL_SIZE);
    case "nats-kv":
      return NatsKvRateLimitStore.open(NATS_URL, target.kvBucket!);
  }
}

/** CPU of the process serving the store (0 for memory), summed over its processes. */
function serverCpu(store: StoreName): Cpu {
  const sum = (m: Map<number, Cpu>) => [...m.values()].reduce(plus, ZERO);
  switch (store) {
    case "memory":
      return ZERO;
    case "redis":
    case "redis-unbatched":
      return sum(cpuByComm("redis-server"));
    case "postgres":
      return sum(cpuByComm("postgres"));
    case "nats-kv": {
      const pid = natsServerPid(NATS_URL);
      return (pid !== null && procCpu(pid)?.cpu) || ZERO;
    }
  }
}

const cpuMs = (c: Cpu) => (c.user + c.system) * 1000;
function clientCpuMs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

/** A check as a write makes it: one user bucket and one IP bucket. */
function check(prefix: string, i: number, limit: BucketLimit): BucketRef[] {
  return [
    { key: `${prefix}:u:user${i % USERS}`, limit },
    { key: `${prefix}:ip:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, limit },
  ];
}

async function latency(store: RateLimitStore, prefix: string) {
  // Warm-up (JIT, connection, script cache), not measured.
  for (let i = 0; i < Math.min(500, SEQUENTIAL); i++) await store.take(check(`${prefix}:warm`, i, OPEN));
  const samples = new Samples(SEQUENTIAL);
  const cpu = process.cpuUsage();
  for (let i = 0; i < SEQUENTIAL; i++) {
    const started = performance.now();
    await store.take(check(prefix, i, OPEN));
    samples.add(performance.now() - started);
  }
  return { ...samples.summary(), clientCpuUsPerCheck: round((clientCpuMs(cpu) * 1000) / SEQUENTIAL, 1) };
}

async function throughput(store: RateLimitStore, target: Target) {
  let done = 0;
  let n = SEQUENTIAL;
  const deadline = performance.now() + SECONDS * 1000;
  const cpu = process.cpuUsage();
  const server = serverCpu(target.store);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        await store.take(check(target.prefix, n++, OPEN));
        done++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const serverMs = cpuMs(minus(serverCpu(target.store), server));
  const batching = store instanceof RedisRateLimitStore ? { checksPerCall: round(store.checks / Math.max(1, store.calls), 1) } : {};
  return {
    checksPerSecond: Math.round(done / seconds),
    clientCpuUsPerCheck: round((clientCpuMs(cpu) * 1000) / done, 1),
    serverCpuUsPerCheck: round((serverMs * 1000) / done, 1),
    ...batching,
  };
}

/** One contention worker: hammers one bucket from `start-at` for the contention window; prints its counts. */
async function worker(target: Target, startAt: number): Promise<void> {
  const store = await openStore(target);
  const bucket: BucketRef[] = [{ key: `${target.prefix}:contended`, limit: CONTENDED }];
  await sleep(Math.max(0, startAt - Date.now()));
  let admitted = 0;
  let refused = 0;
  let errors = 0;
  const first = Date.now();
  const deadline = performance.now() + CONTENTION_SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (performance.now() < deadline) {
        try {
          if ((await store.take(bucket)).admitted) admitted++;
          else refused++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const last = Date.now();
  if (store instanceof NatsKvRateLimitStore) await store.disconnect();
  else await store.close();
  process.stdout.write(JSON.stringify({ admitted, refused, errors, first, last }) + "\n");
}

async function contention(target: Target) {
  const startAt = Date.now() + 3_000;
  const script = fileURLToPath(import.meta.url);
  const runs = await Promise.all(
    [0, 1].map(
      (i) =>
        new Promise<{ admitted: number; refused: number; errors: number; first: number; last: number }>((resolve, reject) => {
          const child = spawn(process.execPath, [script, "--worker", String(i), "--target", JSON.stringify(target), "--start-at", String(startAt), "--contention-seconds", String(CONTENTION_SECONDS), "--rate", String(RATE), "--burst", String(BURST), "--redis-url", REDIS_URL, "--nats-url", NATS_URL, "--pool-size", String(POOL_SIZE)], {
            stdio: ["ignore", "pipe", "inherit"],
          });
          const stop = onCleanup(`stop contention worker ${i}`, () => child.kill("SIGKILL"));
          let out = "";
          child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
          child.once("exit", (code) => {
            void stop();
            if (code === 0) resolve(JSON.parse(out.trim().split("\n").at(-1)!));
            else reject(new Error(`contention worker ${i} exited with ${code}`));
          });
        }),
    ),
  );
  const admitted = runs.reduce((a, r) => a + r.admitted, 0);
  const refused = runs.reduce((a, r) => a + r.refused, 0);
  const errors = runs.reduce((a, r) => a + r.errors, 0);
  const elapsed = (Math.max(...runs.map((r) => r.last)) - Math.min(...runs.map((r) => r.first))) / 1000;
  const bound = Math.floor(BURST + RATE * elapsed);
  return { admitted, refused, errors, elapsedSeconds: round(elapsed, 3), bound, withinBound: admitted <= bound };
}

async function main(): Promise<boolean> {
  const runId = randomBytes(4).toString("hex");
  const results: Record<string, unknown> = {};
  let allShared = true;
  for (const name of STORES) {
    const target: Target = { store: name, prefix: `bench:rl:${runId}:${name}` };
    if (name === "postgres") target.databaseUrl = (await createBenchDatabase(DATABASE_URL)).url;
    if (name === "nats-kv") target.kvBucket = `bench_rl_${runId}`;
    if (name.startsWith("redis")) onCleanup(`delete Redis keys ${target.prefix}`, () => deleteRedisKeys(target.prefix));
    const store = await openStore(target);
    const closeStore = onCleanup(`close ${name}`, () => store.close());
    try {
      const seq = await latency(store, `${target.prefix}:seq`);
      const thr = await throughput(store, target);
      const con = await contention(target);
      if (name !== "memory" && !con.withinBound) allShared = false;
      results[name] = { latencyMs: seq, throughput: thr, contention: con, ...(store instanceof NatsKvRateLimitStore ? { casConflicts: store.conflicts } : {}) };
      console.log(
        [
          `== ${name}`,
          `   latency (1 at a time)   p50 ${seq.p50} ms   p99 ${seq.p99} ms   client CPU ${seq.clientCpuUsPerCheck} µs/check`,
          `   throughput (${CONCURRENCY} in flight) ${thr.checksPerSecond} checks/s   client CPU ${thr.clientCpuUsPerCheck} µs/check   server CPU ${thr.serverCpuUsPerCheck} µs/check${"checksPerCall" in thr ? `   ${thr.checksPerCall} checks per script call` : ""}`,
          `   contention (2 processes, 1 bucket: burst ${BURST}, ${RATE}/s)  admitted ${con.admitted} of ${con.admitted + con.refused} (errors ${con.errors}) in ${con.elapsedSeconds} s; bound ${con.bound}: ${con.withinBound ? "within" : name === "memory" ? "EXCEEDED (each process has its own buckets)" : "EXCEEDED"}`,
        ].join("\n"),
      );
    } finally {
      await closeStore();
    }
  }
  const summary = { bench: "ratelimit", machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version }, config: { seconds: SECONDS, contentionSeconds: CONTENTION_SECONDS, sequential: SEQUENTIAL, concurrency: CONCURRENCY, users: USERS, burst: BURST, rate: RATE, poolSize: POOL_SIZE }, results };
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  else console.log(JSON.stringify(summary));
  return allShared;
}

async function deleteRedisKeys(prefix: string): Promise<void> {
  const { createClient } = await import("@redis/client");
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}:*`, COUNT: 1000 })) if (keys.length > 0) await client.del(keys);
  } finally {
    client.destroy();
  }
}

if (flags.worker !== undefined) {
  await worker(JSON.parse(flags.target!) as Target, Number(flags["start-at"]));
  process.exit(0);
} else {
  await runBench(main, (STORES.length * (SECONDS + CONTENTION_SECONDS + 30) + 60) * 1000);
}
