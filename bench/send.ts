/**
 * `npm run bench:send -- [--senders 64] [--conversations 100] [--seconds 10] [--warmup 2] ...`
 *
 * Send throughput and latency against real PostgreSQL. The bench creates a fresh database
 * on the machine's PostgreSQL, starts Parley on it as a separate process (the same entry
 * point as production, src/main.ts), creates users and group conversations through the API,
 * then runs N concurrent sender loops over gRPC (HTTP/2) for a fixed time: each loop sends a
 * ~100-byte text with a unique client_message_id into a random conversation its user is a
 * member of, awaits the reply and records the latency.
 *
 * Afterwards it checks what was persisted (row count = acknowledged sends, seqs gapless per
 * conversation) and prints messages/s persisted, latency percentiles, errors, and the CPU
 * used by the server, the load generator (this process) and PostgreSQL over the measured
 * window. The last line of stdout is a JSON summary (or it goes to --json FILE).
 *
 * Everything is bounded: fixed duration, a per-call deadline, a watchdog for the whole run,
 * 127.0.0.1 only; the server is stopped (SIGTERM, then SIGKILL after 5 s) and the database
 * dropped even on failure or Ctrl-C.
 *
 * Other flags:
 *   --connections K      HTTP/2 connections the senders share (default 4)
 *   --pool-size P        DATABASE_POOL_SIZE for the server (default: the server's own, 10)
 *   --server-env K=V     extra environment for the server (repeatable)
 *   --server-node-arg A  extra node argument for the server, e.g. --cpu-prof (repeatable)
 *   --sample-pg          sample pg_stat_activity wait events of the bench database every 20 ms
 *   --encrypted          end-to-end encrypted conversations: each send carries an envelope of the
 *                        size the client SDK makes of the same text (a sender-key ciphertext:
 *                        text + MAC + header + signature), at the conversation's key epoch
 *   --search-tokens N    with --encrypted: conversations with blind search, N tokens per send
 *   --database-url URL   the PostgreSQL server to create the bench database on
 *   --json FILE          write the JSON summary to FILE instead of stdout's last line
 *   --rate-limits LIST   run the whole bench once per mode, back to back, and compare: off (RATE_LIMITS=off),
 *                        memory (buckets in the node), redis (buckets in Redis at --redis-url, default
 *                        redis://127.0.0.1:6379). Without it: one run, limits on in memory, above what the
 *                        bench sends (nothing is refused; every send pays for its check)
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { fromBinary } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.ts";
import { EventSchema } from "../gen/parley/v1/event_pb.ts";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import { ConversationType } from "../gen/parley/v1/conversation_pb.ts";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import { UserService } from "../gen/parley/v1/user_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { BENCH_RATE_LIMITS, RATE_LIMIT_FLAGS, rateLimitModes, runRateLimitModes } from "./lib/rate-limits.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ISSUER = "parley-bench";
const AUDIENCE = "parley";
/** Deadline of every RPC. */
const CALL_TIMEOUT_MS = 10_000;
const SERVER_START_TIMEOUT_MS = 30_000;
const KILL_GRACE_MS = 5_000;
const TEXT_BYTES = 100;

// ---------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    senders: { type: "string", default: "64" },
    conversations: { type: "string", default: "100" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "4" },
    "pool-size": { type: "string" },
    "server-env": { type: "string", multiple: true, default: [] },
    "server-node-arg": { type: "string", multiple: true, default: [] },
    "sample-pg": { type: "boolean", default: false },
    encrypted: { type: "boolean", default: false },
    "search-tokens": { type: "string", default: "0" },
    "database-url": { type: "string", default: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
    json: { type: "string" },
    help: { type: "boolean", default: false },
    ...RATE_LIMIT_FLAGS,
  },
});
// --rate-limits: this process only runs the bench once per mode (each a child process) and compares.
const RATE_LIMIT_MODES = rateLimitModes(flags["rate-limits"]);
if (RATE_LIMIT_MODES !== null) process.exit((await runRateLimitModes(import.meta.url, RATE_LIMIT_MODES, flags["redis-url"])) ? 0 : 1);
if (flags.help) {
  const source = readFileSync(fileURLToPath(import.meta.url), "utf8");
  console.log(source.slice(source.indexOf("/**") + 3, source.indexOf("*/")).replace(/^ \* ?/gm, ""));
  process.exit(0);
}

function intFlag(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`bench: --${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    process.exit(2);
  }
  return n;
}
const SENDERS = intFlag("senders", flags.senders, 1, 10_000);
const CONVERSATIONS = intFlag("conversations", flags.conversations, 1, 100_000);
const SECONDS = intFlag("seconds", flags.seconds, 1, 3_600);
const WARMUP = intFlag("warmup", flags.warmup, 0, 600);
const CONNECTIONS = intFlag("connections", flags.connections, 1, 1_000);
const ENCRYPTED = flags.encrypted;
const SEARCH_TOKENS = intFlag("search-tokens", flags["search-tokens"], 0, 256);
if (SEARCH_TOKENS > 0 && !ENCRYPTED) {
  console.error("bench: --search-tokens needs --encrypted");
  process.exit(2);
}
/** What the SDK adds to a group message's text: MAC 16, signature 64, sender device and key ids, index, framing. */
const ENVELOPE_OVERHEAD_BYTES = 16 + 64 + 38 + 18 + 6 + 10;
const POOL_SIZE = flags["pool-size"] === undefined ? undefined : intFlag("pool-size", flags["pool-size"], 1, 1_000);
const ADMIN_URL = flags["database-url"];
{
  const host = new URL(ADMIN_URL).hostname;
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1" && host !== "[::1]") {
    console.error(`bench: --database-url must point at this machine, got host ${host}`);
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------
// Cleanup: whatever happens, stop the server and drop the database.

let server: ChildProcess | null = null;
let serverExited: Promise<void> = Promise.resolve();
let databaseName: string | null = null;
let dataDir: string | null = null;
const sessionManagers: Http2SessionManager[] = [];
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const manager of sessionManagers) manager.abort();
    await stopServer();
    if (databaseName !== null) {
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      try {
        await admin.connect();
        await admin.query(`drop database if exists ${databaseName} with (force)`);
      } catch (error) {
        console.error(`bench: could not drop database ${databaseName}: ${(error as Error).message}`);
      } finally {
        await admin.end().catch(() => {});
      }
    }
    if (dataDir !== null) rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleaning;
}

async function stopServer(): Promise<void> {
  const child = server;
  if (child === null || child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
  await serverExited;
  clearTimeout(timer);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`bench: ${signal}, cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

// The whole run is bounded: setup, warm-up, measurement, verification and cleanup.
const WATCHDOG_MS = (WARMUP + SECONDS) * 1000 + 180_000;
const watchdog = setTimeout(() => {
  console.error(`bench: gave up after ${WATCHDOG_MS / 1000} s`);
  void cleanup().finally(() => process.exit(1));
}, WATCHDOG_MS);

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User and system CPU seconds. */
interface Cpu {
  user: number;
  system: number;
}
const ZERO: Cpu = { user: 0, system: 0 };
const plus = (a: Cpu, b: Cpu): Cpu => ({ user: a.user + b.user, system: a.system + b.system });
const minus = (a: Cpu, b: Cpu): Cpu => ({ user: a.user - b.user, system: a.system - b.system });

/** The command name and CPU time of a process, or null if it is gone. */
function procCpu(pid: number | string): { comm: string; cpu: Cpu } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  const fields = stat.slice(close + 2).split(" "); // fields[0] is field 3 (state); utime, stime are fields 14, 15
  return { comm: stat.slice(open + 1, close), cpu: { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK } };
}

/** CPU time of every PostgreSQL process (postmaster, backends, WAL writer, ...) by pid. */
function postgresCpu(): Map<number, Cpu> {
  const result = new Map<number, Cpu>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const proc = procCpu(entry);
    if (proc?.comm === "postgres") result.set(Number(entry), proc.cpu);
  }
  return result;
}

/** CPU time of the whole machine: busy (user incl. nice; system incl. irq and softirq) and in total. */
function machineCpu(): { busy: Cpu; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  const busy = { user: (user! + nice!) / CLK_TCK, system: (system! + irq! + softirq! + steal!) / CLK_TCK };
  return { busy, total: busy.user + busy.system + (idle! + iowait!) / CLK_TCK };
}

interface CpuSnapshot {
  server: Cpu;
  bench: Cpu;
  postgres: Map<number, Cpu>;
  machine: { busy: Cpu; total: number };
  at: number;
}

function cpuSnapshot(): CpuSnapshot {
  const bench = process.cpuUsage();
  return {
    server: (server?.pid !== undefined && procCpu(server.pid)?.cpu) || ZERO,
    bench: { user: bench.user / 1e6, system: bench.system / 1e6 },
    postgres: postgresCpu(),
    machine: machineCpu(),
    at: performance.now(),
  };
}

/** CPU used between two snapshots, in cores (1.0 = one core busy for the whole window). */
function cpuBetween(a: CpuSnapshot, b: CpuSnapshot) {
  const wall = (b.at - a.at) / 1000;
  const cores = os.cpus().length;
  let postgres = ZERO;
  for (const [pid, cpu] of b.postgres) postgres = plus(postgres, minus(cpu, a.postgres.get(pid) ?? ZERO));
  const total = b.machine.total - a.machine.total;
  const busyShare = minus(b.machine.busy, a.machine.busy);
  // /proc/stat counts every core; scale to the wall-clock window so all figures share a unit.
  const machine = { user: (busyShare.user / total) * cores * wall, system: (busyShare.system / total) * cores * wall };
  const perCore = (cpu: Cpu) => ({ total: round((cpu.user + cpu.system) / wall), user: round(cpu.user / wall), system: round(cpu.system / wall) });
  const server = minus(b.server, a.server);
  const bench = minus(b.bench, a.bench);
  // Whatever else ran meanwhile (other processes, kernel threads such as ksoftirqd).
  const other = minus(machine, plus(plus(server, bench), postgres));
  return {
    wallSeconds: wall,
    cores,
    server: perCore(server),
    bench: perCore(bench),
    postgres: perCore(postgres),
    other: perCore(other),
    machine: perCore(machine),
  };
}

// ---------------------------------------------------------------------------------------
// Helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs fn over items with at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function codeName(error: unknown): string {
  const connectError = ConnectError.from(error);
  return Code[connectError.code] ?? String(connectError.code);
}


// ---------------------------------------------------------------------------------------
// The run

interface Sender {
  userId: string;
  authorization: string;
  messages: Client<typeof MessageService>;
  conversations: string[];
}

async function main() {
  const runId = randomBytes(4).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const userCount = Math.max(SENDERS, 3);

  // How busy the machine is before we start: another workload on these cores skews everything.
  const before = machineCpu();
  await sleep(500);
  const after = machineCpu();
  const busyBefore = minus(after.busy, before.busy);
  const idleBefore = (1 - (busyBefore.user + busyBefore.system) / (after.total - before.total)) * os.cpus().length;

  // Database
  databaseName = `parley_bench_${runId}`;
  {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    try {
      await admin.query(`create database ${databaseName}`);
    } finally {
      await admin.end();
    }
  }
  const databaseUrl = new URL(ADMIN_URL);
  databaseUrl.pathname = `/${databaseName}`;

  // Server
  const port = await freePort();
  dataDir = mkdtempSync(path.join(os.tmpdir(), "parley-bench-"));
  const extraEnv = Object.fromEntries(
    flags["server-env"].map((pair) => {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new Error(`--server-env wants KEY=VALUE, got "${pair}"`);
      return [pair.slice(0, eq), pair.slice(eq + 1)];
    }),
  );
  const serverEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? os.tmpdir(),
    HOST: "127.0.0.1",
    PORT: String(port),
    METRICS_PORT: "off",
    LOG_LEVEL: "warn",
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl.toString(),
    JWT_SECRET: secret,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    ...(POOL_SIZE !== undefined && { DATABASE_POOL_SIZE: String(POOL_SIZE) }),
    ...BENCH_RATE_LIMITS,
    ...extraEnv,
  };
  const serverLog: string[] = [];
  let serverLogLines = 0;
  const child = spawn(process.execPath, [...flags["server-node-arg"], "src/main.ts"], {
    cwd: ROOT,
    env: serverEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  server = child;
  serverExited = new Promise((resolve) => child.once("exit", () => resolve()));
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        serverLogLines++;
        serverLog.push(line);
        if (serverLog.length > 50) serverLog.shift();
      }
    });
  }
  const exitedEarly = serverExited.then(() => {
    throw new Error(`the server exited (code ${child.exitCode}, signal ${child.signalCode}) before the run ended:\n${serverLog.join("\n")}`);
  });
  exitedEarly.catch(() => {}); // observed through the races below

  const baseUrl = `http://127.0.0.1:${port}`;
  const transports = Array.from({ length: CONNECTIONS }, () => {
    const sessionManager = new Http2SessionManager(baseUrl);
    sessionManagers.push(sessionManager);
    return createGrpcTransport({ baseUrl, sessionManager });
  });

  // Wait until the server reports SERVING.
  const health = createClient(Health, transports[0]!);
  const startDeadline = performance.now() + SERVER_START_TIMEOUT_MS;
  await Promise.race([
    exitedEarly,
    (async () => {
      for (;;) {
        try {
          const res = await health.check({}, { timeoutMs: 1_000 });
          if (res.status === HealthCheckResponse_ServingStatus.SERVING) return;
        } catch {
          // not listening yet
        }
        if (performance.now() > startDeadline) throw new Error(`the server did not become healthy in ${SERVER_START_TIMEOUT_MS} ms`);
        await sleep(100);
      }
    })(),
  ]);

  // Setup: users (GetMe creates the row), then M groups. Every sender is in at least one
  // conversation: conversation j gets the users i with i % M == j (when M <= users) and
  // user j % users, then random others up to 3 members.
  const setupStarted = performance.now();
  const userIds = Array.from({ length: userCount }, (_, i) => `bench-${runId}-u${i}`);
  const authorizations = await Promise.all(
    userIds.map(async (userId) => `Bearer ${await mintToken({ secret, issuer: ISSUER, audience: AUDIENCE, userId, expiresIn: "2h" })}`),
  );
  const clientsOf = (i: number) => {
    const transport = transports[i % CONNECTIONS]!;
    return {
      users: createClient(UserService, transport),
      conversations: createClient(ConversationService, transport),
      messages: createClient(MessageService, transport),
    };
  };
  await Promise.race([
    exitedEarly,
    eachLimited(userIds, 32, async (userId, i) => {
      await clientsOf(i).users.getMe({}, { headers: { authorization: authorizations[i]! }, timeoutMs: CALL_TIMEOUT_MS });
    }),
  ]);
  const memberships: number[][] = Array.from({ length: CONVERSATIONS }, () => []);
  for (let i = 0; i < userCount; i++) if (i < SENDERS || CONVERSATIONS > userCount) memberships[i % CONVERSATIONS]!.push(i);
  for (let j = 0; j < CONVERSATIONS; j++) {
    const members = memberships[j]!;
    if (!members.includes(j % userCount)) members.unshift(j % userCount);
    while (members.length < 3) {
      const candidate = Math.floor(Math.random() * userCount);
      if (!members.includes(candidate)) members.push(candidate);
    }
  }
  const conversationIds: string[] = new Array(CONVERSATIONS);
  await Promise.race([
    exitedEarly,
    eachLimited(memberships, 16, async (members, j) => {
      const [creator, ...others] = members as [number, ...number[]];
      const res = await clientsOf(creator).conversations.createConversation(
        { type: ConversationType.GROUP, name: `bench ${j}`, memberIds: others.map((i) => userIds[i]!), encrypted: ENCRYPTED, blindSearch: SEARCH_TOKENS > 0 },
        { headers: { authorization: authorizations[creator]! }, timeoutMs: CALL_TIMEOUT_MS },
      );
      conversationIds[j] = res.conversation!.id;
    }),
  ]);
  const senders: Sender[] = Array.from({ length: SENDERS }, (_, i) => ({
    userId: userIds[i]!,
    authorization: authorizations[i]!,
    messages: clientsOf(i).messages,
    conversations: [],
  }));
  memberships.forEach((members, j) => members.forEach((i) => senders[i]?.conversations.push(conversationIds[j]!)));
  const setupSeconds = (performance.now() - setupStarted) / 1000;

  // Optional: what PostgreSQL backends of the bench database wait on, sampled.
  const sampler = flags["sample-pg"] ? startPgSampler(ADMIN_URL, databaseName) : null;

  // The run
  const stats = new pg.Client({ connectionString: ADMIN_URL });
  await stats.connect();
  const dbStats = async () => {
    const r = await stats.query(
      `select d.xact_commit::text as commits, d.xact_rollback::text as rollbacks,
              w.wal_records::text as wal_records, w.wal_bytes::text as wal_bytes, w.wal_sync::text as wal_syncs, w.wal_write::text as wal_writes
         from pg_stat_database d, pg_stat_wal w where d.datname = $1`,
      [databaseName],
    );
    // pg_stat_database is a cumulative snapshot cached per transaction; one query per call keeps it fresh.
    return r.rows[0] as Record<string, string>;
  };

  const text = (n: number, sender: number) => {
    const head = `bench message ${n} from sender ${sender} `;
    return head + "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".repeat(2).slice(0, TEXT_BYTES - head.length);
  };
  /** The send's body: the text, or (--encrypted) an envelope as large as the SDK would make of it. */
  const contentOf = (body: string) => {
    if (!ENCRYPTED) return { content: { case: "text" as const, value: body } };
    const envelope = {
      ciphertext: randomBytes(Buffer.byteLength(body) + ENVELOPE_OVERHEAD_BYTES),
      nonce: randomBytes(24),
      algorithm: "parley-sender-key-v1",
      keyId: "",
      keyEpoch: 1,
    };
    const searchTokens = Array.from({ length: SEARCH_TOKENS }, () => randomBytes(16));
    return { content: { case: "envelope" as const, value: envelope }, searchTokens };
  };
  const runStarted = performance.now();
  const measureFrom = runStarted + WARMUP * 1000;
  const measureTo = measureFrom + SECONDS * 1000;
  const latencies = new Float64Array(Math.max(1024, 200_000 * (SECONDS + WARMUP)));
  let latencyCount = 0;
  let okTotal = 0;
  let okInWindow = 0;
  let duplicateSeqs = 0;
  const errors = new Map<string, number>();
  const errorSamples: string[] = [];
  const ackedPerConversation = new Map<string, Set<bigint>>(conversationIds.map((id) => [id, new Set()]));
  let stopping = false;

  let cpuAtStart: CpuSnapshot | null = null;
  let cpuAtEnd: CpuSnapshot | null = null;
  let dbAtStart: Record<string, string> | null = null;
  let dbAtEnd: Record<string, string> | null = null;
  const windowTimers = [
    setTimeout(() => {
      cpuAtStart = cpuSnapshot();
      void dbStats().then((s) => (dbAtStart = s));
      sampler?.start();
    }, measureFrom - performance.now()),
    setTimeout(() => {
      cpuAtEnd = cpuSnapshot();
      stopping = true;
      sampler?.stop();
      void dbStats().then((s) => (dbAtEnd = s));
    }, measureTo - performance.now()),
  ];

  const senderLoop = async (sender: Sender, index: number) => {
    let n = 0;
    const headers = { authorization: sender.authorization };
    while (!stopping) {
      const conversationId = sender.conversations[Math.floor(Math.random() * sender.conversations.length)]!;
      const clientMessageId = `${runId}-${index}-${n}`;
      const body = text(n++, index);
      const started = performance.now();
      try {
        const res = await sender.messages.sendMessage(
          { conversationId, clientMessageId, ...contentOf(body) },
          { headers, timeoutMs: CALL_TIMEOUT_MS },
        );
        const ended = performance.now();
        okTotal++;
        const seqs = ackedPerConversation.get(conversationId)!;
        const seq = res.message!.seq;
        if (seqs.has(seq)) duplicateSeqs++;
        else seqs.add(seq);
        if (ended >= measureFrom && ended <= measureTo) okInWindow++;
        if (started >= measureFrom && latencyCount < latencies.length) latencies[latencyCount++] = ended - started;
      } catch (error) {
        const code = codeName(error);
        errors.set(code, (errors.get(code) ?? 0) + 1);
        if (errorSamples.length < 5) errorSamples.push(`${code}: ${(error as Error).message}`);
        await sleep(1); // never spin on a failing server
      }
    }
  };
  await Promise.race([exitedEarly, Promise.all(senders.map(senderLoop))]);
  const drainSeconds = (performance.now() - measureTo) / 1000;
  windowTimers.forEach(clearTimeout);
  while (dbAtEnd === null || dbAtStart === null) await sleep(10);
  await stats.end();
  const waits = sampler ? await sampler.result() : null;

  // Stop the server (a clean SIGTERM: it drains the batcher and closes the pool) before verifying.
  for (const manager of sessionManagers) manager.abort();
  const serverCpu = server?.pid !== undefined ? procCpu(server.pid)?.cpu : undefined;
  const serverCpuTotal = serverCpu ? round(serverCpu.user + serverCpu.system) : null;
  await stopServer();

  // Verification
  const verify = new pg.Client({ connectionString: databaseUrl.toString() });
  await verify.connect();
  let rowCount: number;
  let committedBatches: number;
  let badConversations: string[] = [];
  let mismatchedConversations = 0;
  let lastSeqMismatches = 0;
  let events: { total: number; head: number; gapless: boolean; messageCreated: number; messagesWithoutEvent: number; ok: boolean } | null = null;
  try {
    const totals = await verify.query(`select count(*)::int8::text as n, count(distinct xmin::text)::int8::text as tx from messages`);
    rowCount = Number(totals.rows[0].n);
    // Rows written by one transaction share its xmin: the exact number of committed batches.
    committedBatches = Number(totals.rows[0].tx);
    const perConversation = await verify.query(
      `select c.id, c.last_seq::text as last_seq, count(m.seq)::int8::text as n, coalesce(min(m.seq), 0)::text as min_seq, coalesce(max(m.seq), 0)::text as max_seq
         from conversations c left join messages m on m.conversation_id = c.id group by c.id, c.last_seq`,
    );
    for (const row of perConversation.rows as { id: string; last_seq: string; n: string; min_seq: string; max_seq: string }[]) {
      const count = BigInt(row.n);
      if (count > 0n && (row.min_seq !== "1" || BigInt(row.max_seq) !== count)) badConversations.push(row.id);
      if (BigInt(row.last_seq) !== count) lastSeqMismatches++;
      const acked = ackedPerConversation.get(row.id);
      if (acked !== undefined && BigInt(acked.size) !== count) mismatchedConversations++;
    }
    // The event log (outbox): positions gapless up to the head, one message-created event per stored message.
    const eventTables = await verify.query(`select to_regclass('events') is not null as present`);
    if (eventTables.rows[0].present) {
      // Per partition: positions 1..head with none missing.
      const heads = new Map(
        ((await verify.query({ text: `select partition, position::text from event_log_partitions`, rowMode: "array" })).rows as [number, string][]).map(([p, h]) => [p, BigInt(h)]),
      );
      const head = [...heads.values()].reduce((a, b) => a + b, 0n);
      const rows = (await verify.query({ text: `select partition, position::text as p, payload from events order by partition, position`, rowMode: "array" })).rows as [number, string, Uint8Array][];
      let gapless = BigInt(rows.length) === head;
      const eventKeys = new Set<string>();
      let expected = 1n;
      rows.forEach(([partition, position, payload], i) => {
        if (i > 0 && rows[i - 1]![0] !== partition) expected = 1n;
        if (BigInt(position) !== expected++) gapless = false;
        const event = fromBinary(EventSchema, payload);
        if (event.kind.case === "messageCreated") eventKeys.add(`${event.kind.value.message?.conversationId}/${event.kind.value.message?.seq}`);
      });
      const messageKeys = (await verify.query({ text: `select conversation_id::text, seq::text from messages`, rowMode: "array" })).rows as [string, string][];
      const missing = messageKeys.filter(([c, seq]) => !eventKeys.has(`${c}/${seq}`)).length;
      events = { total: rows.length, head: Number(head), gapless, messageCreated: eventKeys.size, messagesWithoutEvent: missing, ok: gapless && missing === 0 && eventKeys.size === messageKeys.length };
    }
  } finally {
    await verify.end();
  }

  // Results
  const sorted = latencies.slice(0, latencyCount).sort();
  const cpu = cpuBetween(cpuAtStart!, cpuAtEnd!);
  const dStart = dbAtStart as Record<string, string>;
  const dEnd = dbAtEnd as Record<string, string>;
  const delta = (key: string) => Number(BigInt(dEnd[key]!) - BigInt(dStart[key]!));
  const perSecond = Math.max(1e-9, okInWindow / SECONDS);
  const fmt = (c: { total: number; user: number; system: number }) => `${c.total.toFixed(2)} (usr ${c.user.toFixed(2)} sys ${c.system.toFixed(2)})`;
  const errorCount = [...errors.values()].reduce((a, b) => a + b, 0);
  const persistedOk =
    rowCount === okTotal && badConversations.length === 0 && mismatchedConversations === 0 && lastSeqMismatches === 0 && duplicateSeqs === 0 && (events?.ok ?? true);
  const summary = {
    bench: "send",
    config: { senders: SENDERS, conversations: CONVERSATIONS, users: userCount, connections: CONNECTIONS, seconds: SECONDS, warmupSeconds: WARMUP, poolSize: POOL_SIZE ?? null, textBytes: TEXT_BYTES, encrypted: ENCRYPTED, searchTokens: SEARCH_TOKENS, serverEnv: extraEnv, serverNodeArgs: flags["server-node-arg"] },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version, postgres: await postgresVersion() },
    messagesPerSecond: round(okInWindow / SECONDS, 1),
    latencyMs: { count: latencyCount, p50: round(percentile(sorted, 50)), p95: round(percentile(sorted, 95)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1) ?? NaN), mean: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)) },
    sends: { okInWindow, okTotal, errors: errorCount, errorsByCode: Object.fromEntries(errors), errorSamples },
    persistence: { rows: rowCount, acknowledged: okTotal, conversationsWithGaps: badConversations.length, conversationsWithCountMismatch: mismatchedConversations, lastSeqMismatches, duplicateSeqs, events, ok: persistedOk },
    cpuCores: { server: cpu.server, bench: cpu.bench, postgres: cpu.postgres, other: cpu.other, machineBusy: cpu.machine, of: cpu.cores, idleBeforeRun: round(idleBefore) },
    cpuMsPerMessage: {
      server: round((cpu.server.total * 1000) / perSecond, 3),
      bench: round((cpu.bench.total * 1000) / perSecond, 3),
      postgres: round((cpu.postgres.total * 1000) / perSecond, 3),
    },
    postgres: {
      commitsPerSecond: round(delta("commits") / cpu.wallSeconds, 1),
      sendsPerBatch: round(rowCount / Math.max(1, committedBatches)),
      batches: committedBatches,
      rollbacks: delta("rollbacks"),
      walSyncsPerSecond: round(delta("wal_syncs") / cpu.wallSeconds, 1),
      walWritesPerSecond: round(delta("wal_writes") / cpu.wallSeconds, 1),
      walBytesPerMessage: round(delta("wal_bytes") / Math.max(1, okInWindow), 0),
      waitEvents: waits,
    },
    timing: { setupSeconds: round(setupSeconds), drainSeconds: round(drainSeconds, 3), serverCpuSecondsTotal: serverCpuTotal, serverLogLines },
    target: { messagesPerSecond: 5000, p99Ms: 50, met: okInWindow / SECONDS >= 5000 && percentile(sorted, 99) < 50 },
  };

  const lines = [
    "",
    `== bench:send  ${ENCRYPTED ? `encrypted${SEARCH_TOKENS ? ` + ${SEARCH_TOKENS} search tokens` : ""}, ` : ""}${SENDERS} senders, ${CONVERSATIONS} conversations, ${userCount} users, ${CONNECTIONS} HTTP/2 connections, ${SECONDS} s (+${WARMUP} s warm-up)`,
    `   machine            ${summary.machine.cpus} × ${summary.machine.cpuModel}; node ${summary.machine.node}; ${summary.machine.postgres}`,
    `   persisted          ${summary.messagesPerSecond.toFixed(1)} messages/s   (${okInWindow} acknowledged in the window)`,
    `   send latency ms    p50 ${summary.latencyMs.p50}   p95 ${summary.latencyMs.p95}   p99 ${summary.latencyMs.p99}   max ${summary.latencyMs.max}   (n=${latencyCount})`,
    `   errors             ${errorCount}${errorCount ? "  " + JSON.stringify(Object.fromEntries(errors)) : ""}`,
    `   verification       rows ${rowCount} vs acknowledged ${okTotal}; gapless seq: ${badConversations.length === 0 ? "yes" : `NO (${badConversations.length} conversations)`}; per-conversation counts match: ${mismatchedConversations === 0 ? "yes" : `NO (${mismatchedConversations})`}; last_seq matches: ${lastSeqMismatches === 0 ? "yes" : `NO (${lastSeqMismatches})`}; duplicate seqs: ${duplicateSeqs}${events ? `; event log: ${events.total} events, positions gapless to the head: ${events.gapless ? "yes" : "NO"}, message-created events ${events.messageCreated} (messages without one: ${events.messagesWithoutEvent})` : ""}  => ${persistedOk ? "OK" : "FAILED"}`,
    `   cpu (cores)        server ${fmt(cpu.server)}   bench ${fmt(cpu.bench)}   postgres ${fmt(cpu.postgres)}   other ${fmt(cpu.other)}   machine ${fmt(cpu.machine)} of ${cpu.cores}`,
    `   cpu per message    server ${summary.cpuMsPerMessage.server} ms   bench ${summary.cpuMsPerMessage.bench} ms   postgres ${summary.cpuMsPerMessage.postgres} ms`,
    ...(cpu.other.total > 0.15 || idleBefore < cpu.cores - 0.15 ? [`   WARNING            the machine was not quiet (${round(cpu.cores - idleBefore)} cores busy just before the run, ${cpu.other.total} used by others during it)`] : []),
    `   postgres           ${summary.postgres.commitsPerSecond} commits/s, ${summary.postgres.sendsPerBatch} sends per batch transaction (${committedBatches} over the whole run), ${summary.postgres.walSyncsPerSecond} WAL syncs/s, ${summary.postgres.walBytesPerMessage} WAL bytes/message`,
    ...(waits ? [`   pg wait events     ${Object.entries(waits).map(([k, v]) => `${k} ${v}`).join(", ")}`] : []),
    `   target             >= 5000 msg/s and p99 < 50 ms: ${summary.target.met ? "MET" : "NOT MET"}`,
    "",
  ];
  console.log(lines.join("\n"));
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  else console.log(JSON.stringify(summary));
  return persistedOk && errorCount === 0;
}

async function postgresVersion(): Promise<string> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  try {
    await client.connect();
    return `PostgreSQL ${(await client.query("show server_version")).rows[0].server_version}`;
  } catch {
    return "PostgreSQL ?";
  } finally {
    await client.end().catch(() => {});
  }
}

/** Samples wait events of the bench database's backends; result() gives shares of samples. */
function startPgSampler(url: string, datname: string) {
  const client = new pg.Client({ connectionString: url });
  const counts = new Map<string, number>();
  let samples = 0;
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  const connected = client.connect();
  return {
    start() {
      running = true;
      loop = (async () => {
        await connected;
        while (running) {
          const r = await client.query(
            `select coalesce(wait_event_type || ':' || wait_event, 'CPU') as w, state from pg_stat_activity
              where datname = $1 and backend_type = 'client backend' and pid <> pg_backend_pid()`,
            [datname],
          );
          for (const row of r.rows as { w: string; state: string }[]) {
            const key = row.state === "idle" ? "idle" : row.state === "idle in transaction" && row.w === "Client:ClientRead" ? "idle-in-tx(ClientRead)" : row.w;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
          samples++;
          await sleep(20);
        }
      })();
    },
    stop() {
      running = false;
    },
    async result(): Promise<Record<string, string>> {
      await loop;
      await client.end();
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      return Object.fromEntries(
        [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, `${((v / total) * 100).toFixed(0)}% (avg ${(v / Math.max(1, samples)).toFixed(2)} backends)`]),
      );
    },
  };
}

let exitCode = 1;
try {
  exitCode = (await main()) ? 0 : 1;
} catch (error) {
  console.error(`bench: ${(error as Error).stack ?? error}`);
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(exitCode);
