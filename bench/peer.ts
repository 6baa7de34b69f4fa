/**
 * `npm run bench:peer -- [--rates 500,1000,2000,3000,4000,6000] [--seconds 20] [--repeats 3] [--json FILE] ...`
 *
 * Parley side by side with ejabberd, in one run, doing the same work: 200 users, 1:1 chat,
 * every message persisted in PostgreSQL and delivered to its receiver, at rising open-loop rates.
 * For each rate and each system it prints delivered msg/s, P50/P99 send→deliver latency, lost
 * messages and CPU per message (server + PostgreSQL), with the Parley/ejabberd ratios, then the
 * highest rate each system held with P99 < --p99-ms and nothing lost, and the ratio of the two.
 *
 * NEEDS the ejabberd peer harness (setup.sh, bench.js, stop.sh, env.sh), which is not part of
 * this repository: by default at ../shared/peers/ejabberd from the repository root (--peer-dir
 * to point elsewhere). It is called where it lies and never modified; without it the bench
 * exits with status 2. The harness installs ejabberd (and its PostgreSQL driver) with apt the
 * first time.
 *
 * ejabberd:  the harness's setup.sh with EJ_MAM=pg (mod_mam, default: always, on ejabberd's SQL
 *            backend: PostgreSQL on 127.0.0.1:5432; two archive rows per message, written before
 *            routing). Its config, spool, logs and pid go to a fresh temporary directory (EJ_RUN),
 *            its archive to a fresh database parley_peer_ej_<run id>, on free loopback ports and
 *            its own node name, so nothing is written into the harness and it does not clash
 *            with another ejabberd. Then the harness's bench.js --mode=1to1 --users=200 per
 *            rate (a raw XMPP client per user, round-robin senders, a random peer each message,
 *            5 ms ticks), with --db-comm=postgres and --pg-archive-db; its JSON line is kept
 *            whole. Then stop.sh; the database and the directory are removed.
 * Parley:    ONE node (src/main.ts as a child process) on real PostgreSQL + NATS JetStream, a
 *            fresh database parley_bench_<random> and NATS prefix (removed at the end): the
 *            analogue of one ejabberd node. 200 users, each holding an EventService.Subscribe
 *            stream; a DIRECT conversation for every pair that may talk (all 19,900 by default,
 *            so any user can send to any other, as in bench.js). Messages go round-robin over
 *            senders, each to a random other user, open loop at the rate (bench/lib/traffic.ts,
 *            as bench:feed's pairs scenario), through the lean raw gRPC client over
 *            --connections HTTP/2 connections; a message counts when it reaches the receiver's
 *            stream (the sender's own stream also gets a copy, which is not counted).
 *
 * What is measured, both systems alike: a run is --warmup s of traffic (not counted),
 * --seconds s measured, then at most --drain s for the rest to arrive. Delivered msg/s =
 * measured messages delivered by the end of the drain / measured window. Lost = measured
 * messages not delivered by then. Latency: send→deliver in the load generator's own clock
 * (bench.js: from the tick that sent it; Parley: from its scheduled send time, so generator lag
 * counts against Parley). CPU per message = (server process + PostgreSQL) CPU over the
 * measured window / delivered messages, where PostgreSQL is the backends connected to the
 * system's own database plus the server's background processes (WAL writer, checkpointer, …),
 * read from /proc (bench/lib/pg-cpu.ts); every `postgres` process on the machine (bench.js's
 * --db-comm figure, which includes other people's databases on a shared machine) is in the JSON
 * as pgAllCpuMsPerMsg. Parley's NATS CPU is shown beside it, not added. "Held" = P99 < --p99-ms
 * and 0 lost. A system that misses --beyond + 1 rates in a row runs no higher rates (past
 * saturation the queues only grow).
 *
 * Order (--order): interleaved (default) sets both systems up, then runs each rate on ejabberd
 * and right after on Parley, so background load that drifts over the run hits both alike;
 * sequential runs all of ejabberd's rates, stops it, then all of Parley's.
 *
 * Flags:
 *   --rates LIST            offered msg/s, rising (default 500,1000,1500,2000,2500,3000,4000,6000)
 *   --seconds N             measured window per rate (default 20, as the harness)
 *   --warmup N              (default 3)   --drain N  (default 5)
 *   --users N               (default 200)
 *   --partners N            Parley: other users each one may message (default users-1: any)
 *   --systems LIST          ejabberd,parley (default both, ejabberd first)
 *   --order interleaved|sequential   (default interleaved, see above)
 *   --ejabberd-archive pg|none   pg (default): mod_mam on PostgreSQL; none: routing only
 *   --p99-ms N              the latency bound of "held" (default 100)
 *   --repeats N             runs per rate and system (default 1; 3 for figures to quote: medians are reported)
 *   --beyond N              a system stops after N + 1 rates in a row not held (default 1)
 *   --target-ratio N        Parley must hold N× ejabberd's highest held rate (default 3)
 *   --connections N         Parley: HTTP/2 connections for senders, and again for streams (default 4)
 *   --sender-client raw|connect   (default raw)
 *   --quiet-wait N          before each run wait up to N s for the machine to be quiet (default 30)
 *   --peer-dir DIR          the ejabberd harness (default <repo>/../shared/peers/ejabberd)
 *   --server-env K=V        extra environment for the Parley node (repeatable)
 *   --database-url URL      PostgreSQL server (default postgres://postgres@127.0.0.1:5432/postgres)
 *   --nats-url URL          (default nats://127.0.0.1:4222)
 *   --json FILE             write the JSON summary to FILE as well
 *
 * Logs: /tmp/parley-peer-<run id>/ (setup.sh, each bench.js run, the Parley node). The last
 * line of stdout is the JSON summary. Exit status 1 when a system could not be set up or run;
 * missing the target alone is not a failure.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { ConversationType } from "../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { createBenchDatabase, postgresVersion } from "./lib/database.ts";
import { closeConnections, grpcConnections } from "./lib/grpc.ts";
import { natsPrefixForRun, natsServerPid } from "./lib/nats.ts";
import { PgCpuMeter } from "./lib/pg-cpu.ts";
import { busyCores, CpuMeter, procCpu, runQueueWaitSeconds, type CpuReport } from "./lib/proc.ts";
import { benchNodeEnv, ParleyNode, ROOT } from "./lib/server.ts";
import {
  closeStreams,
  countRows,
  ensureUsers,
  IGNORED,
  openStreams,
  PacedTraffic,
  senderConnections,
  Tokens,
  wall,
  type Route,
} from "./lib/traffic.ts";
import { eachLimited, freePort, intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS, sleep } from "./lib/util.ts";

// ---------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    rates: { type: "string", default: "500,1000,1500,2000,2500,3000,4000,6000" },
    seconds: { type: "string", default: "20" },
    warmup: { type: "string", default: "3" },
    drain: { type: "string", default: "5" },
    users: { type: "string", default: "200" },
    partners: { type: "string" },
    systems: { type: "string", default: "ejabberd,parley" },
    order: { type: "string", default: "interleaved" },
    repeats: { type: "string", default: "1" },
    "ejabberd-archive": { type: "string", default: "pg" },
    "p99-ms": { type: "string", default: "100" },
    beyond: { type: "string", default: "1" },
    "target-ratio": { type: "string", default: "3" },
    connections: { type: "string", default: "4" },
    "sender-client": { type: "string", default: "raw" },
    "quiet-wait": { type: "string", default: "30" },
    "peer-dir": { type: "string" },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}

const RATES = flags.rates.split(",").map((r) => intFlag("rates", r.trim(), 1, 100_000));
if (RATES.length === 0 || RATES.some((r, k) => k > 0 && r <= RATES[k - 1]!)) {
  console.error(`bench: --rates must be rising, got ${flags.rates}`);
  process.exit(2);
}
const SECONDS = intFlag("seconds", flags.seconds, 1, 600);
const WARMUP = intFlag("warmup", flags.warmup, 0, 120);
const DRAIN = intFlag("drain", flags.drain, 1, 120);
const USERS = intFlag("users", flags.users, 2, 1000);
const PARTNERS = flags.partners === undefined ? USERS - 1 : intFlag("partners", flags.partners, 1, USERS - 1);
const SYSTEMS = flags.systems.split(",").map((s) => s.trim());
if (SYSTEMS.length === 0 || SYSTEMS.some((s) => s !== "ejabberd" && s !== "parley")) {
  console.error(`bench: --systems must list ejabberd and/or parley, got ${flags.systems}`);
  process.exit(2);
}
const ORDER = flags.order;
if (ORDER !== "interleaved" && ORDER !== "sequential") {
  console.error(`bench: --order must be interleaved or sequential, got ${ORDER}`);
  process.exit(2);
}
const REPEATS = intFlag("repeats", flags.repeats, 1, 10);
const EJ_ARCHIVE = flags["ejabberd-archive"];
if (EJ_ARCHIVE !== "pg" && EJ_ARCHIVE !== "none") {
  console.error(`bench: --ejabberd-archive must be pg or none, got ${EJ_ARCHIVE}`);
  process.exit(2);
}
const P99_MS = intFlag("p99-ms", flags["p99-ms"], 1, 100_000);
const BEYOND = intFlag("beyond", flags.beyond, 0, 100);
const TARGET_RATIO = Number(flags["target-ratio"]);
const CONNECTIONS = intFlag("connections", flags.connections, 1, 64);
const SENDER_CLIENT = flags["sender-client"];
if (SENDER_CLIENT !== "raw" && SENDER_CLIENT !== "connect") {
  console.error(`bench: --sender-client must be raw or connect, got "${SENDER_CLIENT}"`);
  process.exit(2);
}
const QUIET_WAIT = intFlag("quiet-wait", flags["quiet-wait"], 0, 600);
const PEER_DIR = path.resolve(flags["peer-dir"] ?? path.join(ROOT, "..", "shared", "peers", "ejabberd"));
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);
const EXTRA_ENV = keyValues(flags["server-env"], "server-env");

const HARNESS_FILES = ["setup.sh", "bench.js", "stop.sh", "env.sh"];
if (SYSTEMS.includes("ejabberd")) {
  const missing = HARNESS_FILES.filter((f) => !existsSync(path.join(PEER_DIR, f)));
  if (missing.length > 0) {
    console.error(
      `bench:peer compares Parley with ejabberd and needs the ejabberd peer harness (${HARNESS_FILES.join(", ")}).\n` +
        `It was not found at ${PEER_DIR}${missing.length < HARNESS_FILES.length ? ` (missing ${missing.join(", ")})` : ""}.\n` +
        `Put the harness at ../shared/peers/ejabberd beside the repository, point --peer-dir at it, or run Parley alone with --systems parley.`,
    );
    process.exit(2);
  }
}

const RUN_ID = randomBytes(4).toString("hex");
const SECRET = randomBytes(32).toString("base64url");
const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const CALL_TIMEOUT_MS = 10_000;
/** At most this many sends outstanding per sender connection (the server allows 1,000 streams on one). */
const MAX_IN_FLIGHT_PER_CONNECTION = 900;
/** Text length: bench.js's body "sender:seq:sendTime:phase" is ~25 B; Parley's head "<send time> #<i> " alone is ~23 B. */
const TEXT_BYTES = 0;
const LOG_DIR = path.join(os.tmpdir(), `parley-peer-${RUN_ID}`);
mkdirSync(LOG_DIR, { recursive: true });

const perRunS = WARMUP + SECONDS + DRAIN;
const WATCHDOG_MS = 1000 * (900 + SYSTEMS.length * RATES.length * (perRunS + QUIET_WAIT + 150));

// ---------------------------------------------------------------------------------------
// Results

interface RunResult {
  system: "ejabberd" | "parley";
  offered: number;
  deliveredPerSecond: number;
  p50: number;
  p99: number;
  max: number;
  lost: number;
  /** Server process + PostgreSQL (its database's backends + background processes) CPU per delivered message, ms. */
  cpuMsPerMsg: number;
  serverCpuMsPerMsg: number;
  pgCpuMsPerMsg: number;
  /** Every `postgres` process on the machine (other databases too) per delivered message, ms. */
  pgAllCpuMsPerMsg: number;
  /** Parley only: NATS CPU per delivered message, ms (null: its process was not found). */
  natsCpuMsPerMsg?: number | null;
  /** Messages persisted per second of the window (archive rows / rows per message). */
  persistedPerSecond: number | null;
  loadToolCores: number;
  /** CPU used by everything else on the machine over the window, cores (noise). */
  otherCores: number;
  /** The server's threads waiting for a core (runnable, not running) over the window, on average. */
  serverRunQueueWait: number | null;
  busyCoresBefore: number;
  held: boolean;
  raw: unknown;
}

const held = (p99: number, lost: number) => Number.isFinite(p99) && p99 < P99_MS && lost === 0;

async function waitQuiet(): Promise<number> {
  const deadline = performance.now() + QUIET_WAIT * 1000;
  let busy = await busyCores(1000);
  while (busy > 0.3 && performance.now() < deadline) busy = await busyCores(1000);
  return busy;
}

/** Waits (at most maxMs) until `pid` uses under 0.1 core over a second: the previous run's backlog is gone. */
async function waitSettled(pid: number, maxMs = 60_000): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    const a = procCpu(pid);
    await sleep(1000);
    const b = procCpu(pid);
    if (!a || !b) return;
    if (b.cpu.user + b.cpu.system - a.cpu.user - a.cpu.system < 0.1) return;
  }
}

/** Runs a command to completion (bounded), output to a log file; resolves with its stdout. */
function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number; log: string; onLine?: (line: string) => void },
): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? LOG_DIR, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let both = "";
    let partial = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      both += d;
      if (!options.onLine) return;
      const lines = (partial + d).split("\n");
      partial = lines.pop()!;
      for (const line of lines) options.onLine(line);
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (both += d));
    const timer = setTimeout(() => {
      both += `\n[bench:peer] killed after ${options.timeoutMs} ms\n`;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    const stop = onCleanup(`kill ${path.basename(args[0] ?? command)}`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      writeFileSync(options.log, both);
      void stop();
      resolve({ code, stdout });
    });
  });
}

function tail(text: string, lines = 15): string {
  return text.trim().split("\n").slice(-lines).join("\n");
}

// ---------------------------------------------------------------------------------------
// The two systems: set up once, run one rate at a time, torn down at the end

interface System {
  name: "ejabberd" | "parley";
  setup(): Promise<Record<string, unknown>>;
  runRate(rate: number): Promise<RunResult>;
  teardown(): Promise<void>;
}

/** ejabberd through its harness: setup.sh (EJ_MAM=pg), bench.js per rate, stop.sh. */
function ejabberd(): System {
  let env: NodeJS.ProcessEnv = {};
  let pid = 0;
  let c2sPort = 0;
  const pgDb = `parley_peer_ej_${RUN_ID}`;
  const runDir = path.join(os.tmpdir(), `parley-peer-ejabberd-${RUN_ID}`);
  let stopEjabberd: () => Promise<void> = async () => {};
  return {
    name: "ejabberd",
    async setup() {
      const ports = { c2s: await freePort(), http: await freePort(), dist: await freePort() };
      c2sPort = ports.c2s;
      const admin = new URL(ADMIN_URL);
      env = {
        ...process.env,
        EJ_RUN: runDir,
        EJ_NODE: `parley_peer_${RUN_ID}@localhost`,
        EJ_C2S_PORT: String(ports.c2s),
        EJ_HTTP_PORT: String(ports.http),
        EJ_DIST_PORT: String(ports.dist),
        EJ_USERS: String(USERS),
        EJ_MAM: EJ_ARCHIVE === "pg" ? "pg" : "",
        EJ_PG_DB: pgDb,
        EJ_PG_HOST: "127.0.0.1",
        EJ_PG_PORT: admin.port || "5432",
        EJ_PG_USER: decodeURIComponent(admin.username || "postgres"),
      };
      // Undone newest first: stop ejabberd, then remove its directory and its database.
      onCleanup(`drop database ${pgDb}`, async () => {
        const client = new pg.Client({ connectionString: ADMIN_URL });
        try {
          await client.connect();
          await client.query(`drop database if exists ${pgDb} with (force)`);
        } finally {
          await client.end().catch(() => {});
        }
      });
      onCleanup(`remove ${runDir}`, () => rmSync(runDir, { recursive: true, force: true }));
      stopEjabberd = onCleanup("stop ejabberd (stop.sh)", async () => {
        const r = await run("bash", [path.join(PEER_DIR, "stop.sh")], { env, timeoutMs: 90_000, log: path.join(LOG_DIR, "ejabberd-stop.log") });
        if (r.code !== 0) console.log(`   ejabberd stop.sh exited ${r.code}; see ${LOG_DIR}/ejabberd-stop.log`);
      });
      console.log(`\n== ejabberd: ${PEER_DIR}/setup.sh with EJ_MAM=${env.EJ_MAM || "(none)"}, EJ_RUN=${runDir}, c2s 127.0.0.1:${ports.c2s}${EJ_ARCHIVE === "pg" ? `, archive database ${pgDb}` : ""}`);
      const t0 = performance.now();
      const setupLog = path.join(LOG_DIR, "ejabberd-setup.log");
      const setup = await run("bash", [path.join(PEER_DIR, "setup.sh")], { env, timeoutMs: 600_000, log: setupLog });
      if (setup.code !== 0) throw new Error(`ejabberd setup.sh exited ${setup.code}:\n${tail(readFileSync(setupLog, "utf8"))}`);
      pid = Number(readFileSync(path.join(runDir, "ejabberd.pid"), "utf8").trim());
      const comm = procCpu(pid)?.comm;
      const config = readFileSync(path.join(runDir, "conf", "ejabberd.yml"), "utf8");
      const archiveOnPg = /^\s*mod_mam:\s*\n\s*db_type: sql/m.test(config) && /^sql_type: pgsql/m.test(config) && /^\s*default: always/m.test(config);
      const version = /ejabberd (\S+) is running/.exec(readFileSync(setupLog, "utf8"))?.[1] ?? "?";
      const erlOpts = /^ERL_OPTIONS="(.*)"$/m.exec(readFileSync(path.join(runDir, "conf", "ejabberdctl.cfg"), "utf8"))?.[1] ?? "?";
      const setupSeconds = round((performance.now() - t0) / 1000, 1);
      console.log(`   ejabberd ${version} up in ${setupSeconds} s, pid ${pid} (${comm}), ERL_OPTIONS "${erlOpts}"; archive on PostgreSQL (mod_mam, db_type sql, default always, sql_type pgsql): ${archiveOnPg ? "yes" : "NO"}; ${USERS} users registered`);
      if (EJ_ARCHIVE === "pg" && !archiveOnPg) throw new Error(`ejabberd's generated config has no mod_mam on PostgreSQL (${runDir}/conf/ejabberd.yml)`);
      return { version, pid, erlOptions: erlOpts, archiveOnPostgres: archiveOnPg, archiveDatabase: EJ_ARCHIVE === "pg" ? pgDb : null, rowsPerMessage: EJ_ARCHIVE === "pg" ? 2 : 0, ports, runDir, setupSeconds };
    },
    async runRate(rate) {
      await waitSettled(pid);
      const busy = await waitQuiet();
      const args = [
        path.join(PEER_DIR, "bench.js"),
        "--mode=1to1",
        `--users=${USERS}`,
        `--rate=${rate}`,
        `--duration=${SECONDS}`,
        `--warmup=${WARMUP}`,
        `--drain=${DRAIN}`,
        `--port=${c2sPort}`,
        `--server-pid=${pid}`,
        `--db-comm=postgres`,
        `--label=parley-peer-${RUN_ID}`,
        ...(EJ_ARCHIVE === "pg" ? [`--pg-archive-db=${pgDb}`, `--pg-port=${env.EJ_PG_PORT}`, `--pg-user=${env.EJ_PG_USER}`] : []),
      ];
      const log = path.join(LOG_DIR, `ejabberd-bench-${rate}.log`);
      // This database's PostgreSQL CPU over bench.js's measured window: it starts 0.5 s after
      // bench.js prints "logged in" plus the warm-up, and lasts --seconds.
      const pgMeter = new PgCpuMeter(ADMIN_URL, pgDb);
      let pgWindow: Promise<{ cores: number; seconds: number; processes: number }> | null = null;
      let waitWindow: number | null = null;
      const r = await run(process.execPath, args, {
        timeoutMs: (60 + WARMUP + SECONDS + DRAIN + 20 + 30) * 1000,
        log,
        onLine: (line) => {
          if (pgWindow !== null || !line.startsWith("logged in")) return;
          pgWindow = (async () => {
            await sleep(500 + WARMUP * 1000);
            await pgMeter.start();
            const w0 = runQueueWaitSeconds(pid);
            const t0 = performance.now();
            await sleep(SECONDS * 1000);
            const w1 = runQueueWaitSeconds(pid);
            if (w0 !== null && w1 !== null) waitWindow = round((w1 - w0) / ((performance.now() - t0) / 1000));
            return pgMeter.stop();
          })();
        },
      });
      const line = r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
      if (r.code !== 0 || !line) throw new Error(`bench.js at ${rate} msg/s exited ${r.code}:\n${tail(readFileSync(log, "utf8"))}`);
      const pgCpu = pgWindow ? await (pgWindow as Promise<{ cores: number; seconds: number; processes: number }>) : null;
      const j = JSON.parse(line);
      const wallS: number = j.cpu.wallS;
      const delivered: number = j.delivered;
      const perMsg = (cores: number) => (delivered > 0 ? round((cores * wallS * 1000) / delivered, 3) : NaN);
      const server = j.cpu.serverCpuPct / 100;
      const pgCores = pgCpu?.cores ?? NaN;
      const result: RunResult = {
        system: "ejabberd",
        offered: rate,
        deliveredPerSecond: j.deliveredRate,
        p50: j.latencyMs.p50,
        p99: j.latencyMs.p99,
        max: j.latencyMs.max,
        lost: j.lost,
        serverCpuMsPerMsg: perMsg(server),
        pgCpuMsPerMsg: perMsg(pgCores),
        cpuMsPerMsg: perMsg(server + pgCores),
        pgAllCpuMsPerMsg: perMsg((j.cpu.dbCpuPct ?? 0) / 100),
        persistedPerSecond: j.archive && typeof j.archive.rowsPerS === "number" ? round(j.archive.rowsPerS / 2, 1) : null,
        loadToolCores: round(j.cpu.loadToolCpuPct / 100),
        otherCores: round(j.cpu.otherCpuPct / 100),
        serverRunQueueWait: waitWindow,
        busyCoresBefore: busy,
        held: held(j.latencyMs.p99, j.lost),
        raw: { ...j, pgCpuThisDatabase: pgCpu },
      };
      printRun(
        result,
        `errors ${j.errors}, disconnects ${j.disconnects}, dup ${j.dup}; archive ${j.archive ? `${j.archive.rowsMeasuredWindow} rows in the window (${j.archive.rowsPerRecvMsg} per received message)` : "-"}; tool loop delay p99 ${j.loadToolLoopDelayMs.p99} ms\n     cpu ejabberd ${round(server)}   postgres (its database + background) ${round(pgCores)}   every postgres process ${round((j.cpu.dbCpuPct ?? 0) / 100)}   load tool ${result.loadToolCores}   other ${result.otherCores}   (cores); ejabberd's threads waiting for a core ${waitWindow ?? "?"} on average`,
      );
      return result;
    },
    teardown: () => stopEjabberd(),
  };
}

/** Parley: one node on real PostgreSQL + NATS JetStream. */
function parley(): System {
  let node: ParleyNode | null = null;
  let runRate: (rate: number) => Promise<RunResult> = async () => {
    throw new Error("not set up");
  };
  const connections: ReturnType<typeof grpcConnections> = [];
  return {
    name: "parley",
    async setup() {
      const db = await createBenchDatabase(ADMIN_URL);
      const natsPrefix = natsPrefixForRun(NATS_URL);
      const dataDir = mkdtempSync(path.join(os.tmpdir(), "parley-peer-data-"));
      onCleanup("remove data dir", () => rmSync(dataDir, { recursive: true, force: true }));
      console.log(`\n== Parley: one node, database ${db.name}, NATS prefix ${natsPrefix}`);
      const n = await ParleyNode.start({
        label: "a",
        logFile: path.join(LOG_DIR, "parley-node.log"),
        env: {
          ...benchNodeEnv({ databaseUrl: db.url, natsUrl: NATS_URL, natsPrefix, secret: SECRET, issuer: ISSUER, audience: AUDIENCE, dataDir }),
          NODE_ID: "a",
          ...EXTRA_ENV,
        },
      });
      node = n;
      const failed = n.failed;
      const setupConnections = grpcConnections(n.baseUrl, CONNECTIONS);
      const streamConnections = grpcConnections(n.baseUrl, CONNECTIONS);
      connections.push(...setupConnections, ...streamConnections);
      const tokens = new Tokens(SECRET, ISSUER, AUDIENCE);
      const users = await tokens.makeUsers(`pp-${RUN_ID}`, USERS);
      const t0 = performance.now();
      await Promise.race([failed, ensureUsers(users, setupConnections, CALL_TIMEOUT_MS)]);
      // A DIRECT conversation for each pair that may talk: i with i+1 … i+PARTNERS (mod USERS).
      const pairKey = (x: number, y: number) => (x < y ? x * USERS + y : y * USERS + x);
      const pairs = new Set<number>();
      for (let s = 0; s < USERS; s++) for (let d = 1; d <= PARTNERS; d++) pairs.add(pairKey(s, (s + d) % USERS));
      const conversation = new Map<number, string>();
      const clients = setupConnections.map((c) => createClient(ConversationService, c.transport));
      await Promise.race([
        failed,
        eachLimited([...pairs], 32, async (key, k) => {
          const x = Math.floor(key / USERS);
          const y = key % USERS;
          const res = await clients[k % clients.length]!.createConversation({ type: ConversationType.DIRECT, memberIds: [users[y]!.id] }, { headers: users[x]!.headers, timeoutMs: CALL_TIMEOUT_MS });
          conversation.set(key, res.conversation!.id);
        }),
      ]);
      closeConnections(setupConnections);
      const conversationIds = [...conversation.values()];
      const setupSeconds = round((performance.now() - t0) / 1000, 1);
      console.log(`   node pid ${n.pid} port ${n.port}; ${USERS} users, ${conversationIds.length} DIRECT conversations (each user may message ${PARTNERS} others) in ${setupSeconds} s`);

      const routeOn = senderConnections(n.baseUrl, streamConnections, SENDER_CLIENT as "raw" | "connect", CALL_TIMEOUT_MS);
      const routes = new Map<number, Route>();
      const route = (s: number, r: number): Route => {
        const key = s * USERS + r;
        let found = routes.get(key);
        if (found === undefined) {
          found = routeOn(s, users[s]!, conversation.get(pairKey(s, r))!);
          routes.set(key, found);
        }
        return found;
      };
      const nats = natsServerPid(NATS_URL);
      let runNo = 0;
      runRate = async (rate) => {
        runNo++;
        await waitSettled(n.pid);
        const busy = await waitQuiet();
        // Round-robin senders, a random other partner each message (xorshift, as bench.js).
        const total = Math.floor(rate * (WARMUP + SECONDS));
        const receiver = new Uint16Array(total);
        let rng = 0x9e3779b9 ^ rate;
        for (let i = 0; i < total; i++) {
          rng ^= rng << 13;
          rng ^= rng >>> 17;
          rng ^= rng << 5;
          const s = i % USERS;
          const pick = (rng >>> 0) % PARTNERS;
          receiver[i] = PARTNERS === USERS - 1 ? (pick >= s ? pick + 1 : pick) : (s + 1 + pick) % USERS;
        }
        const traffic = new PacedTraffic(
          (i) => route(i % USERS, receiver[i]!),
          rate,
          1,
          // client_message_id is the idempotency key: every run needs its own, or a repeat's sends are answered from the first run's rows
          `${RUN_ID}-${runNo}-`,
          CONNECTIONS * MAX_IN_FLIGHT_PER_CONNECTION,
          (i, stream) => (stream === receiver[i] ? 0 : stream === i % USERS ? IGNORED : -1),
          { warmupSeconds: WARMUP, seconds: SECONDS, drainMs: DRAIN * 1000, textBytes: TEXT_BYTES },
        );
        const streams = await Promise.race([failed, openStreams(users, streamConnections, traffic.deliver)]);
        const meter = new CpuMeter({ server: n.pid, ...(nats !== null ? { nats } : {}) });
        const pgMeter = new PgCpuMeter(ADMIN_URL, db.name);
        let cpu: CpuReport | null = null;
        let pgStarted: Promise<void> = Promise.resolve();
        let pgWindow: Promise<{ cores: number; seconds: number; processes: number }> | null = null;
        let wait0: { s: number | null; at: number } = { s: null, at: 0 };
        let waitWindow: number | null = null;
        await Promise.race([
          failed,
          traffic.run((edge) => {
            if (edge === "start") {
              meter.start();
              wait0 = { s: runQueueWaitSeconds(n.pid), at: performance.now() };
              pgStarted = pgMeter.start();
            } else {
              cpu = meter.stop();
              const w1 = runQueueWaitSeconds(n.pid);
              if (wait0.s !== null && w1 !== null) waitWindow = round((w1 - wait0.s) / ((performance.now() - wait0.at) / 1000));
              pgWindow = pgStarted.then(() => pgMeter.stop());
            }
          }),
        ]);
        const pgCpu = await (pgWindow as Promise<{ cores: number; seconds: number; processes: number }> | null);
        const drainSeconds = await Promise.race([failed, traffic.drain()]);
        const res = traffic.result();
        const streamsEnded = streams.filter((s) => !s.open).length;
        await closeStreams(streams);
        const rows = await countRows(db, conversationIds, wall(traffic.t0 + WARMUP * 1000), wall(traffic.t0 + (WARMUP + SECONDS) * 1000));
        const c = cpu! as CpuReport;
        const delivered = res.windowMessagesDelivered;
        const perMsg = (cores: number) => (delivered > 0 ? round((cores * c.wallSeconds * 1000) / delivered, 3) : NaN);
        const server = c.server ?? NaN;
        const pgCores = pgCpu?.cores ?? NaN;
        const result: RunResult = {
          system: "parley",
          offered: rate,
          deliveredPerSecond: round(delivered / SECONDS, 1),
          p50: res.latencyMs.p50,
          p99: res.latencyMs.p99,
          max: res.latencyMs.max,
          lost: res.lostInWindow,
          serverCpuMsPerMsg: perMsg(server),
          pgCpuMsPerMsg: perMsg(pgCores),
          cpuMsPerMsg: perMsg(server + pgCores),
          pgAllCpuMsPerMsg: perMsg(c.postgres),
          natsCpuMsPerMsg: c.nats === undefined ? null : perMsg(c.nats),
          persistedPerSecond: round(rows.in_window / SECONDS, 1),
          loadToolCores: c.bench,
          otherCores: c.other,
          serverRunQueueWait: waitWindow,
          busyCoresBefore: busy,
          held: held(res.latencyMs.p99, res.lostInWindow),
          raw: { ...res, cpuCores: c, pgCpuThisDatabase: pgCpu, drainSeconds: round(drainSeconds), rows, streamsEndedEarly: streamsEnded },
        };
        printRun(
          result,
          `errors ${res.errors.total}${res.errors.total ? " " + JSON.stringify(res.errors.byCode) : ""}, skipped ${res.skippedByGenerator}, duplicates ${res.duplicateDeliveries}, misrouted ${res.misroutedDeliveries}, streams ended ${streamsEnded}; rows ${rows.in_window} in the window (${rows.total} in all, ${rows.total === rows.distinct_ids ? "no duplicates" : "DUPLICATES"}); generator lag p99 ${res.generatorLagMs.p99} ms; drain ${round(drainSeconds)} s\n     cpu node ${round(server)}   postgres (its database + background) ${round(pgCores)}   every postgres process ${c.postgres}   nats ${c.nats ?? "?"}   load generator ${c.bench}   other ${c.other}   (cores); node's threads waiting for a core ${waitWindow ?? "?"} on average`,
        );
        return result;
      };
      return { nodes: 1, pid: n.pid, database: db.name, natsPrefix, natsPid: nats, conversations: conversationIds.length, partners: PARTNERS, connections: CONNECTIONS, senderClient: SENDER_CLIENT, setupSeconds, rowsPerMessage: "1 message row + 1 event-log row (group-committed), and the conversation's last_seq and the receiver's unread counter updated" };
    },
    runRate: (rate) => runRate(rate),
    async teardown() {
      closeConnections(connections);
      if (!node) return;
      const stopped = node;
      node = null;
      await stopped.stop();
      const during = stopped.linesBeforeStop ?? stopped.logLines;
      if (during > 0) console.log(`   Parley node logged ${during} lines (warn and above) before it was stopped; see ${LOG_DIR}/parley-node.log`);
    },
  };
}
// ---------------------------------------------------------------------------------------
// Output

const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? "-" : !Number.isFinite(v) ? (v > 0 ? "∞" : "-") : v.toFixed(digits));
const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : round(a / b, 2));

function printRun(r: RunResult, detail: string): void {
  console.log(
    `   ${r.system.padEnd(8)} ${String(r.offered).padStart(6)} msg/s offered: delivered ${fmt(r.deliveredPerSecond)}/s, P50 ${fmt(r.p50)} ms, P99 ${fmt(r.p99)} ms, lost ${r.lost}, CPU ${fmt(r.cpuMsPerMsg, 3)} ms/msg (server ${fmt(r.serverCpuMsPerMsg, 3)} + PostgreSQL ${fmt(r.pgCpuMsPerMsg, 3)}${r.natsCpuMsPerMsg !== undefined ? `; NATS ${fmt(r.natsCpuMsPerMsg, 3)}` : ""}), other load ${fmt(r.otherCores, 2)} cores => ${r.held ? "held" : "NOT held"}\n     ${detail}`,
  );
}

/** One system at one rate over its repeats: medians, worst P99, lost summed; held by the median P99 and no loss at all. */
interface Aggregate {
  offered: number;
  runs: number;
  deliveredPerSecond: number;
  p50: number;
  p99: number;
  p99Worst: number;
  lost: number;
  cpuMsPerMsg: number;
  serverCpuMsPerMsg: number;
  pgCpuMsPerMsg: number;
  pgAllCpuMsPerMsg: number;
  natsCpuMsPerMsg: number | null;
  persistedPerSecond: number | null;
  loadToolCores: number;
  otherCores: number;
  serverRunQueueWait: number | null;
  held: boolean;
  /** Runs that held, of `runs`. */
  runsHeld: number;
}

function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function aggregate(runs: readonly RunResult[]): Aggregate | null {
  if (runs.length === 0) return null;
  const m = (f: (r: RunResult) => number) => round(median(runs.map(f)), 3);
  const p99 = median(runs.map((r) => r.p99));
  const lost = runs.reduce((sum, r) => sum + r.lost, 0);
  const nats = runs.map((r) => r.natsCpuMsPerMsg).filter((v): v is number => typeof v === "number");
  const persisted = runs.map((r) => r.persistedPerSecond).filter((v): v is number => typeof v === "number");
  return {
    offered: runs[0]!.offered,
    runs: runs.length,
    deliveredPerSecond: m((r) => r.deliveredPerSecond),
    p50: m((r) => r.p50),
    p99: round(p99, 2),
    p99Worst: Math.max(...runs.map((r) => r.p99)),
    lost,
    cpuMsPerMsg: m((r) => r.cpuMsPerMsg),
    serverCpuMsPerMsg: m((r) => r.serverCpuMsPerMsg),
    pgCpuMsPerMsg: m((r) => r.pgCpuMsPerMsg),
    pgAllCpuMsPerMsg: m((r) => r.pgAllCpuMsPerMsg),
    natsCpuMsPerMsg: nats.length ? round(median(nats), 3) : null,
    persistedPerSecond: persisted.length ? round(median(persisted), 1) : null,
    loadToolCores: m((r) => r.loadToolCores),
    otherCores: m((r) => r.otherCores),
    serverRunQueueWait: ((w) => (w.length ? round(median(w)) : null))(runs.map((r) => r.serverRunQueueWait).filter((v): v is number => v !== null)),
    held: held(p99, lost),
    runsHeld: runs.filter((r) => r.held).length,
  };
}

function table(ej: readonly RunResult[], pa: readonly RunResult[]) {
  const header = ["offered msg/s", "system", "runs", "delivered msg/s", "P50 ms", "P99 ms", "P99 worst", "lost", "CPU ms/msg (srv+PG)", "server", "PostgreSQL", "persisted msg/s", "held", "other load (cores)", "server waiting for CPU"];
  const rows: string[][] = [];
  const perRate: Record<string, unknown>[] = [];
  for (const rate of RATES) {
    const e = aggregate(ej.filter((r) => r.offered === rate));
    const p = aggregate(pa.filter((r) => r.offered === rate));
    if (!e && !p) continue;
    const line = (r: Aggregate | null, name: string) =>
      r
        ? [String(rate), name, String(r.runs), fmt(r.deliveredPerSecond), fmt(r.p50), fmt(r.p99), fmt(r.p99Worst), String(r.lost), fmt(r.cpuMsPerMsg, 3), fmt(r.serverCpuMsPerMsg, 3), fmt(r.pgCpuMsPerMsg, 3), fmt(r.persistedPerSecond), r.held ? "yes" : "no", fmt(r.otherCores, 2), fmt(r.serverRunQueueWait, 2)]
        : [String(rate), name, "0", "(not run)", "", "", "", "", "", "", "", "", "", "", ""];
    rows.push(line(e, "ejabberd"));
    rows.push(line(p, "Parley"));
    const ratios = {
      delivered: ratio(p?.deliveredPerSecond, e?.deliveredPerSecond),
      p50: ratio(p?.p50, e?.p50),
      p99: ratio(p?.p99, e?.p99),
      cpuPerMsg: ratio(p?.cpuMsPerMsg, e?.cpuMsPerMsg),
      serverCpuPerMsg: ratio(p?.serverCpuMsPerMsg, e?.serverCpuMsPerMsg),
      pgCpuPerMsg: ratio(p?.pgCpuMsPerMsg, e?.pgCpuMsPerMsg),
      persisted: ratio(p?.persistedPerSecond, e?.persistedPerSecond),
    };
    const x = (v: number | null) => (v === null ? "-" : `${fmt(v, 2)}×`);
    if (e && p) rows.push([String(rate), "Parley/ejabberd", "", x(ratios.delivered), x(ratios.p50), x(ratios.p99), x(ratio(p.p99Worst, e.p99Worst)), "", x(ratios.cpuPerMsg), x(ratios.serverCpuPerMsg), x(ratios.pgCpuPerMsg), x(ratios.persisted), "", "", ""]);
    perRate.push({ offered: rate, ejabberd: e, parley: p, parleyOverEjabberd: e && p ? ratios : null });
  }
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
  const show = (cells: string[]) => "| " + cells.map((c, k) => c.padEnd(widths[k]!)).join(" | ") + " |";
  console.log(["", show(header), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.map(show)].join("\n"));
  return perRate;
}

/** The highest rate whose aggregate held. */
function highestHeld(runs: readonly RunResult[]): Aggregate | null {
  let best: Aggregate | null = null;
  for (const rate of RATES) {
    const a = aggregate(runs.filter((r) => r.offered === rate));
    if (a?.held) best = a;
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// Main

async function main(): Promise<boolean> {
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version, postgres: await postgresVersion(ADMIN_URL), busyCoresBeforeRun: await busyCores(1000) };
  console.log(
    `bench:peer run ${RUN_ID}: ${USERS} users 1:1, rates ${RATES.join(", ")} msg/s, ${SECONDS} s measured (+${WARMUP} s warm-up, ≤ ${DRAIN} s drain) each; ${machine.cpus} × ${machine.cpuModel}; node ${machine.node}; ${machine.postgres}; logs in ${LOG_DIR}`,
  );
  if (machine.busyCoresBeforeRun > 0.3) console.log(`WARNING: the machine was not quiet: ${machine.busyCoresBeforeRun} of ${machine.cpus} cores busy just before the run (other workloads skew every figure)`);
  let ok = true;
  const results: Record<string, { setup?: Record<string, unknown>; runs: RunResult[]; stoppedAfter?: string; error?: string }> = {};
  const fail = (system: System, error: unknown) => {
    ok = false;
    const message = String((error as Error).stack ?? error);
    console.error(`bench:peer: ${system.name} failed: ${message.length > 3000 ? message.slice(0, 3000) + "…" : message}`);
    results[system.name]!.error = message.slice(0, 1000);
  };
  const systems = SYSTEMS.map((name) => (name === "ejabberd" ? ejabberd() : parley()));
  const states = new Map<System, { misses: number; live: boolean }>();
  /** One run of system at rate, unless the system is out of the sweep. */
  const runOnce = async (system: System, rate: number) => {
    const state = states.get(system)!;
    if (!state.live) return;
    try {
      results[system.name]!.runs.push(await system.runRate(rate));
    } catch (error) {
      state.live = false;
      fail(system, error);
    }
  };
  /** After all repeats of a rate: a system that missed --beyond + 1 rates in a row (by the median run) runs no higher rates. */
  const judge = (system: System, rate: number) => {
    const state = states.get(system)!;
    const agg = aggregate(results[system.name]!.runs.filter((r) => r.offered === rate));
    if (!state.live || agg === null) return;
    state.misses = agg.held ? 0 : state.misses + 1;
    if (state.misses > BEYOND) {
      state.live = false;
      results[system.name]!.stoppedAfter = `${state.misses} rates in a row not held (last ${rate} msg/s)`;
      console.log(`   ${system.name}: ${state.misses} rates in a row not held; no higher rates for it`);
    }
  };
  for (const system of systems) {
    results[system.name] = { runs: [] };
    states.set(system, { misses: 0, live: false });
  }
  const setUp = async (system: System) => {
    try {
      results[system.name]!.setup = await system.setup();
      states.get(system)!.live = true;
    } catch (error) {
      fail(system, error);
    }
  };
  try {
    if (ORDER === "interleaved") {
      // Both up first (an idle ejabberd or Parley node costs next to nothing), then each rate on
      // one system right after the other, so drifting background load hits both alike.
      for (const system of systems) await setUp(system);
      for (const rate of RATES) {
        for (let k = 0; k < REPEATS; k++) for (const system of systems) await runOnce(system, rate);
        for (const system of systems) judge(system, rate);
      }
    } else {
      for (const system of systems) {
        await setUp(system);
        for (const rate of RATES) {
          for (let k = 0; k < REPEATS; k++) await runOnce(system, rate);
          judge(system, rate);
        }
        await system.teardown();
      }
    }
  } finally {
    for (const system of systems) await system.teardown().catch((error: unknown) => console.error(`bench:peer: ${system.name} teardown: ${(error as Error).message}`));
  }
  const ej = results.ejabberd?.runs ?? [];
  const pa = results.parley?.runs ?? [];
  console.log(`\n== bench:peer ${USERS} users 1:1, persisted and delivered; ejabberd ${EJ_ARCHIVE === "pg" ? "with mod_mam on PostgreSQL (2 archive rows per message)" : "routing only (no archive)"}; Parley one node + PostgreSQL + NATS JetStream`);
  console.log(`   CPU ms/msg = (server process + PostgreSQL: the system's own database's backends and the background processes) CPU over the measured window / delivered messages.`);
  console.log(`   "held" = P99 < ${P99_MS} ms (median of the rate's runs) and 0 lost (in all of them). ${REPEATS > 1 ? `Medians of ${REPEATS} runs per rate; "P99 worst" is the worst run.` : "One run per rate."} "other load" = CPU used by everything else on the machine meanwhile; "server waiting for CPU" = the server's threads runnable but not running, on average (≈ 0 on a quiet machine).`);
  const perRate = table(ej, pa);
  const he = highestHeld(ej);
  const hp = highestHeld(pa);
  const heldRatio = he && hp ? round(hp.offered / he.offered, 2) : null;
  const met = he !== null && hp !== null && hp.offered >= TARGET_RATIO * he.offered;
  console.log("");
  const none = (runs: readonly RunResult[]) => (runs.length ? `none of the ${new Set(runs.map((r) => r.offered)).size} rates run` : "not run");
  console.log(`   highest rate held (P99 < ${P99_MS} ms, 0 lost): ejabberd ${he ? `${he.offered} msg/s (P99 ${fmt(he.p99)} ms, ${fmt(he.cpuMsPerMsg, 3)} ms CPU/msg)` : none(ej)}; Parley ${hp ? `${hp.offered} msg/s (P99 ${fmt(hp.p99)} ms, ${fmt(hp.cpuMsPerMsg, 3)} ms CPU/msg)` : none(pa)}`);
  console.log(`   Parley/ejabberd held-rate ratio: ${heldRatio === null ? "-" : `${heldRatio}×`}; target Parley ≥ ${TARGET_RATIO}× ejabberd in the same run: ${met ? "MET" : "NOT MET"}${he && RATES.at(-1) === hp?.offered ? " (Parley held the highest rate tried; raise --rates to find its limit)" : ""}`);
  const summary = {
    bench: "peer",
    runId: RUN_ID,
    machine,
    config: { order: ORDER, repeats: REPEATS, users: USERS, partners: PARTNERS, rates: RATES, seconds: SECONDS, warmup: WARMUP, drain: DRAIN, p99Ms: P99_MS, beyond: BEYOND, ejabberdArchive: EJ_ARCHIVE, peerDir: PEER_DIR, parleyNodes: 1, connections: CONNECTIONS, senderClient: SENDER_CLIENT },
    ejabberd: results.ejabberd ?? null,
    parley: results.parley ?? null,
    perRate,
    highestHeld: { ejabberd: he?.offered ?? null, parley: hp?.offered ?? null, parleyOverEjabberd: heldRatio, target: { ratio: TARGET_RATIO, met } },
    ok,
  };
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary, (_, v) => (typeof v === "bigint" ? v.toString() : v === Infinity ? "Infinity" : v)));
  return ok;
}

await runBench(main, WATCHDOG_MS);
