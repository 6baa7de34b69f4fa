/**
 * `npm run bench:registry -- [--streams 10000] [--users 1000] [--rounds 2] [--streams-per-connection 500]`
 *
 * What the connection registry costs PostgreSQL per connect and per disconnect. One Parley node
 * (src/main.ts as a child process, NODE_ID a) on a fresh database `parley_bench_<random>` of
 * the real PostgreSQL server and a fresh NATS_PREFIX, both removed at the end. Each round runs
 * the same work twice, back to back, with CONNECTION_REGISTRY=off and then on (a fresh node and
 * database each time):
 *
 *   connect     --streams Subscribe streams (of --users users, made known by GetMe first) opened
 *               at once over gRPC, --streams-per-connection per HTTP/2 connection, each waited on
 *               until its caught_up frame; with the registry on, then until ListConnections
 *               (an operator's, on the same node) counts them all.
 *   disconnect  every stream closed by the client; with the registry on, until the count is 0.
 *
 * Each phase is measured from before the first stream to a settle pause after the last (so
 * PostgreSQL has published its statistics: an idle backend flushes them within 10 s): the
 * registry's insert and delete statements, and apart its heartbeats and sweeps (the node's
 * parley_registry_statements_total, on /metrics),
 * transactions of the bench database (pg_stat_database xact_commit + xact_rollback; every
 * registry statement but the node's start and stop is its own transaction), rows inserted and
 * deleted, WAL bytes (the bench database's records between pg_current_wal_lsn readings, read
 * with pg_waldump: run it as root or postgres on the database machine; otherwise the whole
 * server's WAL, other tenants' writes included), and CPU of the database's
 * backends plus PostgreSQL's background processes (/proc). The registry's cost is on − off,
 * divided by the streams; its listing delay is the time from the last caught_up frame until
 * all streams are listed.
 *
 * Flags:
 *   --streams N                  streams per phase (default 10000)
 *   --users N                    distinct users the streams belong to (default 1000)
 *   --rounds N                   off/on pairs (default 2)
 *   --streams-per-connection N   (default 500; the server allows 1000)
 *   --settle-seconds N           pause before each statistics read (default 11)
 *   --server-env K=V             extra environment for the node (repeatable)
 *   --database-url URL           PostgreSQL server to create the bench database on
 *   --nats-url URL               (default nats://127.0.0.1:4222)
 *   --json FILE                  write the JSON summary to FILE as well
 *
 * The last line of stdout is the JSON summary. Exit status 1 when a stream failed to open or
 * the registry did not list (or drop) every stream.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { ConnectionService } from "../gen/parley/v1/connection_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { runBench } from "./lib/cleanup.ts";
import { postgresVersion } from "./lib/database.ts";
import { closeConnections, grpcConnections } from "./lib/grpc.ts";
import { PgCpuMeter } from "./lib/pg-cpu.ts";
import { openWalReader } from "./lib/pg-wal.ts";
import { startSingleNodeRun } from "./lib/server.ts";
import { closeStreams, ensureUsers, openStreams, Tokens } from "./lib/traffic.ts";
import { freePort, intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS, sleep } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "10000" },
    users: { type: "string", default: "1000" },
    rounds: { type: "string", default: "2" },
    "streams-per-connection": { type: "string", default: "500" },
    "settle-seconds": { type: "string", default: "11" },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}
const STREAMS = intFlag("streams", flags.streams, 1, 100_000);
const USERS = intFlag("users", flags.users, 1, STREAMS);
const ROUNDS = intFlag("rounds", flags.rounds, 1, 20);
const PER_CONNECTION = intFlag("streams-per-connection", flags["streams-per-connection"], 1, 1000);
const SETTLE_MS = intFlag("settle-seconds", flags["settle-seconds"], 0, 60) * 1000;
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);
const EXTRA_ENV = keyValues(flags["server-env"], "server-env");

const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const SECRET = randomBytes(32).toString("base64url");
const RUN_ID = randomBytes(4).toString("hex");
const CALL_TIMEOUT_MS = 10_000;
/** Longest the bench waits for the registry to list (or drop) every stream. */
const LISTING_DEADLINE_MS = 30_000;
const WATCHDOG_MS = 1000 * (120 + ROUNDS * 2 * (90 + (4 * SETTLE_MS) / 1000 + STREAMS / 200));

type Mode = "off" | "on";
interface Snapshot {
  xacts: number;
  inserted: number;
  deleted: number;
  lsn: string;
}
interface Phase {
  /** Inserts and deletes the registry sent (its metric; 0 when off). */
  statements: number;
  /** Its heartbeats and sweeps over the phase (one of each per node every REGISTRY_HEARTBEAT_SECONDS). */
  livenessStatements: number;
  /** Transactions, rows, WAL bytes and PostgreSQL CPU ms over the phase. */
  xacts: number;
  inserted: number;
  deleted: number;
  walBytes: number;
  pgCpuMs: number;
  /** From the first stream opened (or closed) until the last caught_up (or close). */
  clientSeconds: number;
  /** From the last caught_up (or close) until the registry counted every stream (or none); null when off. */
  listingMs: number | null;
}
interface Run {
  mode: Mode;
  round: number;
  connect: Phase;
  disconnect: Phase;
}

async function snapshot(client: pg.Client, database: string): Promise<Snapshot> {
  const r = await client.query(
    `select (xact_commit + xact_rollback)::int8::text as xacts, tup_inserted::text as inserted, tup_deleted::text as deleted, pg_current_wal_lsn()::text as lsn
       from pg_stat_database where datname = $1`,
    [database],
  );
  const row = r.rows[0] as Record<string, string>;
  return { xacts: Number(row.xacts), inserted: Number(row.inserted), deleted: Number(row.deleted), lsn: row.lsn! };
}

async function serverWalBytes(client: pg.Client, from: string, to: string): Promise<number> {
  return Number((await client.query(`select pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::int8::text as d`, [from, to])).rows[0].d);
}

/** Whether WAL figures are the bench database's own (pg_waldump) or the whole server's. */
let walScope: "database" | "server" = "database";

async function runOnce(mode: Mode, roundNo: number, tokens: Tokens): Promise<Run> {
  const metricsPort = await freePort();
  const { database, node } = await startSingleNodeRun("registry", {
    adminUrl: ADMIN_URL,
    natsUrl: NATS_URL,
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    env: { NODE_ID: "a", CONNECTION_REGISTRY: mode, METRICS_PORT: String(metricsPort), ...EXTRA_ENV },
  });
  /** The registry's insert and delete statements so far (its heartbeats and sweeps, a fixed cost per node, apart). */
  const registryStatements = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const count = { writes: 0, liveness: 0 };
    for (const line of text.split("\n")) {
      const m = /^parley_registry_statements_total\{kind="(\w+)"\} (\d+)/.exec(line);
      if (m) count[m[1] === "insert" || m[1] === "delete" ? "writes" : "liveness"] += Number(m[2]);
    }
    return count;
  };
  const stats = new pg.Client({ connectionString: ADMIN_URL });
  await stats.connect();
  try {
    const users = await tokens.makeUsers(`reg-${RUN_ID}-${mode}${roundNo}`, USERS);
    const setup = grpcConnections(node.baseUrl, 4);
    await ensureUsers(users, setup, CALL_TIMEOUT_MS);
    const operatorToken = await mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId: `reg-${RUN_ID}-ops`, roles: ["operator"] });
    const registry = createClient(ConnectionService, setup[0]!.transport);
    const listed = async () => {
      const res = await registry.listConnections({ pageSize: 1 }, { headers: { authorization: `Bearer ${operatorToken}` }, timeoutMs: CALL_TIMEOUT_MS });
      return res.nodes.reduce((sum, n) => sum + Number(n.connections), 0);
    };
    const waitListed = async (count: number): Promise<number> => {
      const from = performance.now();
      while ((await listed()) !== count) {
        if (performance.now() - from > LISTING_DEADLINE_MS) throw new Error(`the registry did not reach ${count} streams within ${LISTING_DEADLINE_MS} ms`);
        await sleep(20);
      }
      return performance.now() - from;
    };
    const cpu = new PgCpuMeter(ADMIN_URL, database.name);
    const wal = await openWalReader(ADMIN_URL, database.name);
    if (!wal) walScope = "server";
    const measure = async (work: () => Promise<{ clientSeconds: number; listingMs: number | null }>): Promise<Phase> => {
      await sleep(SETTLE_MS);
      const before = await snapshot(stats, database.name);
      const statementsBefore = await registryStatements();
      await cpu.start();
      const { clientSeconds, listingMs } = await work();
      await sleep(SETTLE_MS);
      const used = await cpu.stop();
      const after = await snapshot(stats, database.name);
      const statementsAfter = await registryStatements();
      return {
        statements: statementsAfter.writes - statementsBefore.writes,
        livenessStatements: statementsAfter.liveness - statementsBefore.liveness,
        xacts: after.xacts - before.xacts,
        inserted: after.inserted - before.inserted,
        deleted: after.deleted - before.deleted,
        walBytes: wal ? await wal.bytesOf(before.lsn, after.lsn) : await serverWalBytes(stats, before.lsn, after.lsn),
        pgCpuMs: round(used.cores * used.seconds * 1000, 1),
        clientSeconds,
        listingMs,
      };
    };

    const connections = grpcConnections(node.baseUrl, Math.ceil(STREAMS / PER_CONNECTION));
    const owners = Array.from({ length: STREAMS }, (_, i) => users[i % USERS]!);
    let streams: Awaited<ReturnType<typeof openStreams>> = [];
    const connect = await measure(async () => {
      const started = performance.now();
      streams = await openStreams(owners, connections, () => {}, 0, 1024);
      const clientSeconds = round((performance.now() - started) / 1000);
      return { clientSeconds, listingMs: mode === "on" ? round(await waitListed(STREAMS)) : null };
    });
    const disconnect = await measure(async () => {
      const started = performance.now();
      await closeStreams(streams);
      const clientSeconds = round((performance.now() - started) / 1000);
      return { clientSeconds, listingMs: mode === "on" ? round(await waitListed(0)) : null };
    });
    closeConnections([...connections, ...setup]);
    return { mode, round: roundNo, connect, disconnect };
  } finally {
    await stats.end();
    await node.stop();
    await database.drop();
  }
}

function perStream(phase: Phase) {
  return {
    statements: round(phase.statements / STREAMS, 4),
    xacts: round(phase.xacts / STREAMS, 4),
    rows: round((phase.inserted + phase.deleted) / STREAMS, 3),
    walBytes: round(phase.walBytes / STREAMS, 1),
    pgCpuMs: round(phase.pgCpuMs / STREAMS, 4),
  };
}

function describe(run: Run): string {
  const line = (name: string, p: Phase) =>
    `   ${name.padEnd(10)} ${String(p.statements).padStart(4)} registry writes (+${p.livenessStatements} heartbeat/sweep) ${String(p.xacts).padStart(6)} xacts  ${String(p.inserted).padStart(6)} ins ${String(p.deleted).padStart(6)} del  ` +
    `${(p.walBytes / 1024).toFixed(0).padStart(7)} KiB WAL  ${String(p.pgCpuMs).padStart(7)} ms pg CPU  client ${p.clientSeconds} s` +
    (p.listingMs === null ? "" : `  all ${name === "connect" ? "listed" : "gone"} ${p.listingMs} ms after`);
  return [`registry ${run.mode} (round ${run.round})`, line("connect", run.connect), line("disconnect", run.disconnect)].join("\n");
}

/** The registry's share: each round's on − off, per stream, averaged over the rounds. */
function registryCost(runs: readonly Run[], phase: "connect" | "disconnect") {
  const diffs: ReturnType<typeof perStream>[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const on = runs.find((x) => x.round === r && x.mode === "on")![phase];
    const off = runs.find((x) => x.round === r && x.mode === "off")![phase];
    diffs.push(perStream({ ...on, statements: on.statements - off.statements, livenessStatements: 0, xacts: on.xacts - off.xacts, inserted: on.inserted - off.inserted, deleted: on.deleted - off.deleted, walBytes: on.walBytes - off.walBytes, pgCpuMs: on.pgCpuMs - off.pgCpuMs }));
  }
  const mean = (pick: (d: ReturnType<typeof perStream>) => number) => round(diffs.reduce((s, d) => s + pick(d), 0) / diffs.length, 4);
  return { statements: mean((d) => d.statements), xacts: mean((d) => d.xacts), rows: mean((d) => d.rows), walBytes: round(mean((d) => d.walBytes), 1), pgCpuMs: mean((d) => d.pgCpuMs), perRound: diffs };
}

async function main(): Promise<boolean> {
  console.log(`bench:registry — ${STREAMS} streams of ${USERS} users, ${ROUNDS} round(s) of registry off/on, ${await postgresVersion(ADMIN_URL)}`);
  const tokens = new Tokens(SECRET, ISSUER, AUDIENCE);
  const runs: Run[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    for (const mode of ["off", "on"] as const) {
      const run = await runOnce(mode, r, tokens);
      runs.push(run);
      console.log(describe(run));
    }
  }
  const onRuns = runs.filter((r) => r.mode === "on");
  const summary = {
    walScope,
    streams: STREAMS,
    users: USERS,
    rounds: ROUNDS,
    connect: registryCost(runs, "connect"),
    disconnect: registryCost(runs, "disconnect"),
    listedAfterMs: onRuns.map((r) => r.connect.listingMs),
    goneAfterMs: onRuns.map((r) => r.disconnect.listingMs),
    runs,
  };
  console.log(
    `registry cost per stream (on − off, mean of ${ROUNDS}): connect ${summary.connect.statements} statements, ${summary.connect.xacts} xacts, ${summary.connect.rows} rows, ${summary.connect.walBytes} B WAL, ${summary.connect.pgCpuMs} ms pg CPU; ` +
      `disconnect ${summary.disconnect.statements} statements, ${summary.disconnect.xacts} xacts, ${summary.disconnect.rows} rows, ${summary.disconnect.walBytes} B WAL, ${summary.disconnect.pgCpuMs} ms pg CPU (WAL of the ${walScope}); ` +
      `all ${STREAMS} listed ${summary.listedAfterMs.join(" / ")} ms after the last caught_up, gone ${summary.goneAfterMs.join(" / ")} ms after the last close`,
  );
  const json = JSON.stringify(summary);
  if (flags.json) writeFileSync(flags.json, json);
  console.log(json);
  return true;
}

await runBench(main, WATCHDOG_MS);
