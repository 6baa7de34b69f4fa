/**
 * `npm run bench:search -- [--messages 1000000] [--conversations 1000] [--member-of 50] ...`
 *
 * Search on the PostgreSQL backend (OPENSEARCH_URL unset), over real PostgreSQL and NATS.
 *
 * 1. Load: a fresh database; one Parley node (src/main.ts, a child process) migrates it. The
 *    bench then writes the corpus straight into `messages` and `message_search` with bulk SQL
 *    (bench/lib/search-corpus.ts: the same normalization the indexer uses) and runs ANALYZE
 *    (which the backend's broad-query plans read): N messages with a Zipf-distributed
 *    vocabulary (bench/lib/corpus.ts) over C group conversations, 4–24 words each, spread over
 *    90 days; the indexes are built after the load. One user is a member of M of the
 *    conversations (~N·M/C messages they may search); each conversation has 5 more.
 * 2. Search latency: that user's SearchMessages over gRPC, one call at a time, for a mix of
 *    selective (rare word), medium, two-word, phrase, broad (very common word), broad in
 *    recency order, exclusion, sender-filtered and date-filtered queries. P50/P95/P99 overall
 *    and per kind.
 *    With `--before DIR` (a checkout of an earlier release, e.g. /work/before) a second node
 *    runs DIR's src/main.ts on the same database (it ignores migrations it does not know),
 *    and the two are measured in alternating rounds (10 rounds of Q/10 calls each, the same
 *    queries for both, the order within a round alternating), each after its own warm-up;
 *    the tables are printed side by side with the ratio after/before.
 * 3. Indexing lag (the current node only): sends at --lag-rate msg/s (open loop) for
 *    --lag-seconds into the user's conversations, through the durable search-indexer
 *    consumer; a poller reads message_search every 20 ms and records, per message, the time
 *    from its created_at (taken in the sending transaction) to its row being visible
 *    (= searchable). Also prints the server's own parley_search_index_lag_seconds histogram.
 *
 * Flags: --queries Q (default 600), --warmup-queries W (50), --rounds R (10, with --before),
 * --before DIR, --cpu-prof DIR (profile the current node into DIR; summarize with
 * `node bench/lib/cpuprofile.ts FILE`), --lag-rate R (1000), --lag-seconds S (10), --skip-lag, --database-url URL,
 * --nats-url URL, --json FILE.
 * Everything is cleaned up (nodes stopped, database dropped, NATS streams deleted) even on failure.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import { SearchService } from "../gen/parley/v1/search_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { message } from "./lib/corpus.ts";
import { createBenchDatabase, postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { natsPrefixForRun } from "./lib/nats.ts";
import { busyCores, CpuMeter, formatCpu, type CpuReport } from "./lib/proc.ts";
import { MIX, SEARCHER, SearchCorpus, type Corpus, type QueryKind, type SearchRequest } from "./lib/search-corpus.ts";
import { ParleyNode } from "./lib/server.ts";
import { formatLatency, Samples, type LatencySummary } from "./lib/stats.ts";
import { ErrorTally, freePort, intFlag, round, sleep } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    messages: { type: "string", default: "1000000" },
    conversations: { type: "string", default: "1000" },
    "member-of": { type: "string", default: "50" },
    vocabulary: { type: "string", default: "20000" },
    queries: { type: "string", default: "600" },
    "warmup-queries": { type: "string", default: "50" },
    rounds: { type: "string", default: "10" },
    before: { type: "string" },
    "cpu-prof": { type: "string" },
    "lag-rate": { type: "string", default: "1000" },
    "lag-seconds": { type: "string", default: "10" },
    "skip-lag": { type: "boolean", default: false },
    "database-url": { type: "string", default: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
    "nats-url": { type: "string", default: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" },
    json: { type: "string" },
  },
});
const MESSAGES = intFlag("messages", flags.messages, 1000, 10_000_000);
const CONVERSATIONS = intFlag("conversations", flags.conversations, 10, 100_000);
const MEMBER_OF = intFlag("member-of", flags["member-of"], 1, CONVERSATIONS);
const VOCABULARY = intFlag("vocabulary", flags.vocabulary, 500, 1_000_000);
const QUERIES = intFlag("queries", flags.queries, 10, 100_000);
const WARMUP_QUERIES = intFlag("warmup-queries", flags["warmup-queries"], 0, 10_000);
const ROUNDS = intFlag("rounds", flags.rounds, 1, 1000);
const LAG_RATE = intFlag("lag-rate", flags["lag-rate"], 1, 20_000);
const LAG_SECONDS = intFlag("lag-seconds", flags["lag-seconds"], 1, 600);
const BEFORE = flags.before === undefined ? null : path.resolve(flags.before);
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
if (BEFORE !== null && !existsSync(path.join(BEFORE, "src/main.ts"))) throw new Error(`--before ${BEFORE}: no src/main.ts there`);

const LAG_POLL_MS = 20;
/** How long after the send window a message may take to show up before it counts as lost. */
const LAG_DRAIN_MS = 30_000;
const MAX_SENDS_IN_FLIGHT = 512;
const SECRET = randomBytes(32).toString("hex");
const CALL_TIMEOUT_MS = 10_000;

const corpusSource = new SearchCorpus({ messages: MESSAGES, conversations: CONVERSATIONS, memberOf: MEMBER_OF, vocabulary: VOCABULARY });

/** One node under measurement: its client, and what its calls took. */
class Measured {
  readonly all = new Samples();
  readonly byKind = new Map<QueryKind, Samples>();
  readonly hits = new Map<QueryKind, number[]>();
  readonly errors = new ErrorTally();
  readonly cpu: CpuReport[] = [];
  readonly node: ParleyNode;
  readonly client: Client<typeof SearchService>;
  readonly headers: Record<string, string>;

  constructor(node: ParleyNode, token: string) {
    this.node = node;
    this.client = createClient(SearchService, grpcConnection(node.baseUrl).transport);
    this.headers = { authorization: `Bearer ${token}` };
  }

  /** Runs the queries one at a time; records them unless this is a warm-up. */
  async run(queries: readonly { kind: QueryKind; request: SearchRequest }[], record: boolean): Promise<void> {
    const meter = new CpuMeter({ server: this.node.pid });
    meter.start();
    for (const { kind, request } of queries) {
      const begun = performance.now();
      try {
        const response = await this.client.searchMessages(request, { headers: this.headers, timeoutMs: CALL_TIMEOUT_MS });
        const ms = performance.now() - begun;
        if (!record) continue;
        this.all.add(ms);
        if (!this.byKind.has(kind)) this.byKind.set(kind, new Samples());
        this.byKind.get(kind)!.add(ms);
        this.hits.set(kind, [...(this.hits.get(kind) ?? []), response.hits.length]);
      } catch (error) {
        this.errors.add(error, kind);
      }
    }
    if (record) this.cpu.push(meter.stop());
  }

  summary() {
    const kinds: Partial<Record<QueryKind, LatencySummary & { fullPages: number; meanHits: number }>> = {};
    for (const kind of Object.keys(MIX) as QueryKind[]) {
      const samples = this.byKind.get(kind);
      if (!samples) continue;
      const counts = this.hits.get(kind) ?? [];
      kinds[kind] = { ...samples.summary(), fullPages: counts.filter((n) => n === 20).length, meanHits: round(counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length), 1) };
    }
    // CPU: the rounds' cores-busy, weighted by their wall time.
    const wall = this.cpu.reduce((s, c) => s + c.wallSeconds, 0);
    const weighted = (pick: (c: CpuReport) => number) => round(this.cpu.reduce((s, c) => s + pick(c) * c.wallSeconds, 0) / Math.max(1e-9, wall));
    const cpu = { wallSeconds: round(wall), server: weighted((c) => c.server ?? 0), postgres: weighted((c) => c.postgres), bench: weighted((c) => c.bench) };
    return { overall: this.all.summary(), kinds, errors: this.errors.toJSON(), cpu };
  }
}

/** The query sequence: warm-up queries first, then the measured ones (the same for every node). */
function queryMix(senders: readonly string[], count: number) {
  return Array.from({ length: count }, () => {
    const kind = corpusSource.pickKind();
    return { kind, request: corpusSource.makeQuery(kind, senders) };
  });
}

async function searchLatency(nodes: ParleyNode[], corpus: Corpus, pool: pg.Pool) {
  const token = await mintToken({ secret: SECRET, issuer: "parley", audience: "parley", userId: SEARCHER, expiresIn: "2h" });
  const senders = (await pool.query<{ user_id: string }>("select distinct user_id from conversation_members where conversation_id = any($1::uuid[])", [corpus.mine])).rows.map((r) => r.user_id);
  const queries = queryMix(senders, WARMUP_QUERIES + QUERIES);
  const warmup = queries.slice(0, WARMUP_QUERIES);
  const measured = queries.slice(WARMUP_QUERIES);
  const runs = nodes.map((node) => new Measured(node, token));
  const rounds = nodes.length > 1 ? ROUNDS : 1;
  for (let r = 0; r < rounds; r++) {
    const slice = measured.slice(Math.floor((r * measured.length) / rounds), Math.floor(((r + 1) * measured.length) / rounds));
    // Each node warms up just before its first round; the order alternates round by round.
    for (const run of r % 2 === 0 ? runs : [...runs].reverse()) {
      if (r === 0) await run.run(warmup, false);
      await run.run(slice, true);
    }
  }
  const summaries = runs.map((run) => run.summary());
  printTable(nodes.map((n) => n.label), summaries);
  return Object.fromEntries(nodes.map((node, i) => [node.label, summaries[i]!]));
}

/** Per kind: P50/P95/P99 (ms) of each node side by side, and the last node's P95 over the first's. */
function printTable(labels: string[], summaries: ReturnType<Measured["summary"]>[]) {
  const cell = (s: LatencySummary | undefined) => (s ? `${s.p50.toFixed(1)} / ${s.p95.toFixed(1)} / ${s.p99.toFixed(1)}` : "-").padEnd(24);
  const ratio = (a: LatencySummary | undefined, b: LatencySummary | undefined) => (a && b && summaries.length > 1 ? `×${round(b.p95 / a.p95, 2)}` : "");
  console.log(`   ${"kind".padEnd(14)} ${labels.map((l) => `${l} P50 / P95 / P99 ms`.padEnd(24)).join(" ")} ${summaries.length > 1 ? "P95 after/before" : ""}`);
  const rows: [string, (s: ReturnType<Measured["summary"]>) => LatencySummary | undefined][] = [
    ["all", (s) => s.overall],
    ...(Object.keys(MIX) as QueryKind[]).map((kind): [string, (s: ReturnType<Measured["summary"]>) => LatencySummary | undefined] => [kind, (s) => s.kinds[kind]]),
  ];
  for (const [name, pick] of rows) {
    console.log(`   ${name.padEnd(14)} ${summaries.map((s) => cell(pick(s))).join(" ")} ${ratio(pick(summaries[0]!), pick(summaries.at(-1)!))}`);
  }
  for (const [i, s] of summaries.entries()) {
    const pages = Object.entries(s.kinds).map(([kind, k]) => `${kind} ${k!.fullPages}/${k!.count}`).join(", ");
    console.log(`   ${labels[i]}: full pages of 20: ${pages}; CPU cores while measured: node ${s.cpu.server}, postgres ${s.cpu.postgres}, bench ${s.cpu.bench}`);
    if (s.errors.total > 0) console.log(`   ${labels[i]} errors: ${JSON.stringify(s.errors)}`);
  }
}

/** Sends at a fixed rate and measures commit → visible in message_search. */
async function indexingLag(node: ParleyNode, corpus: Corpus, pool: pg.Pool, metricsPort: number) {
  const token = await mintToken({ secret: SECRET, issuer: "parley", audience: "parley", userId: SEARCHER, expiresIn: "2h" });
  const clients = Array.from({ length: 4 }, () => createClient(MessageService, grpcConnection(node.baseUrl).transport));
  const headers = { authorization: `Bearer ${token}` };
  const pending = new Map<string, { conversationId: string; seq: string; committedMs: number }>();
  const lag = new Samples();
  const sendLatency = new Samples();
  const errors = new ErrorTally();
  let inFlight = 0;
  let skipped = 0;
  let sent = 0;
  let acked = 0;
  let polling = true;
  let drainUntil = Infinity;
  const poller = (async () => {
    while (polling || (pending.size > 0 && performance.now() < drainUntil)) {
      await sleep(LAG_POLL_MS);
      if (pending.size === 0) continue;
      const keys = [...pending.values()];
      const seen = await pool.query<{ conversation_id: string; seq: string }>(
        `select s.conversation_id, s.seq from message_search s
         join unnest($1::uuid[], $2::int8[]) as k(c, q) on s.conversation_id = k.c and s.seq = k.q`,
        [keys.map((k) => k.conversationId), keys.map((k) => k.seq)],
      );
      const now = Date.now();
      for (const row of seen.rows) {
        const key = `${row.conversation_id}/${row.seq}`;
        const entry = pending.get(key);
        if (!entry) continue;
        lag.add(now - entry.committedMs);
        pending.delete(key);
      }
    }
  })();
  const meter = new CpuMeter({ server: node.pid });
  meter.start();
  const windowStart = performance.now();
  const total = LAG_RATE * LAG_SECONDS;
  while (sent + skipped < total) {
    const due = Math.min(total, Math.floor(((performance.now() - windowStart) / 1000) * LAG_RATE));
    while (sent + skipped < due) {
      if (inFlight >= MAX_SENDS_IN_FLIGHT) {
        skipped++;
        continue;
      }
      const n = sent++;
      inFlight++;
      const begun = performance.now();
      clients[n % clients.length]!
        .sendMessage(
          { conversationId: corpus.mine[n % corpus.mine.length]!, clientMessageId: `lag-${n}`, content: { case: "text", value: `lag probe ${n} ${message(corpusSource.words, corpusSource.random)}` } },
          { headers, timeoutMs: CALL_TIMEOUT_MS },
        )
        .then(
          (response) => {
            acked++;
            sendLatency.add(performance.now() - begun);
            const m = response.message!;
            const key = `${m.conversationId}/${m.seq}`;
            pending.set(key, { conversationId: m.conversationId, seq: m.seq.toString(), committedMs: timestampMs(m.createdAt!) });
          },
          (error: unknown) => errors.add(error, "send"),
        )
        .finally(() => inFlight--);
    }
    await sleep(5);
  }
  const sendSeconds = (performance.now() - windowStart) / 1000;
  while (inFlight > 0) await sleep(10);
  const cpu = meter.stop();
  drainUntil = performance.now() + LAG_DRAIN_MS;
  polling = false;
  await poller;
  const lost = pending.size;
  for (let i = 0; i < lost; i++) lag.add(Infinity);
  const serverHistogram = await scrapeLagHistogram(metricsPort);
  const summary = lag.summary();
  console.log(`   sent ${sent} at ${round(acked / sendSeconds)} acked msg/s (target ${LAG_RATE}; ${skipped} not sent: ${MAX_SENDS_IN_FLIGHT} already in flight)`);
  console.log(`   send    ${formatLatency(sendLatency.summary())} ms`);
  console.log(`   lag     ${formatLatency(summary)} ms (commit → visible in message_search; poll every ${LAG_POLL_MS} ms)`);
  console.log(`   server histogram parley_search_index_lag_seconds: ${JSON.stringify(serverHistogram)}`);
  if (lost > 0) console.log(`   ${lost} acknowledged messages were not indexed within ${LAG_DRAIN_MS / 1000} s`);
  if (errors.total > 0) console.log(`   errors: ${JSON.stringify(errors.toJSON())}`);
  console.log(`   CPU: ${formatCpu(cpu)}`);
  return { targetRate: LAG_RATE, ackedPerSecond: round(acked / sendSeconds), skipped, send: sendLatency.summary(), lag: summary, lost, serverHistogram, errors: errors.toJSON(), cpu };
}

/** The server's histogram as count, and the upper bounds its P50/P95/P99 fall under. */
async function scrapeLagHistogram(port: number) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const buckets = [...text.matchAll(/^parley_search_index_lag_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)].map((m) => ({ le: m[1]!, count: Number(m[2]) }));
  const count = buckets.at(-1)?.count ?? 0;
  const under = (p: number) => buckets.find((b) => b.count >= p * count)?.le ?? "?";
  return { count, p50AtMostSeconds: under(0.5), p95AtMostSeconds: under(0.95), p99AtMostSeconds: under(0.99) };
}

async function main(): Promise<boolean> {
  const busyBefore = await busyCores(1000);
  const db = await createBenchDatabase(ADMIN_URL);
  const natsPrefix = natsPrefixForRun(NATS_URL);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "parley-search-"));
  onCleanup("remove data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version, postgres: await postgresVersion(ADMIN_URL), busyCoresBeforeRun: busyBefore };
  console.log(`bench:search: database ${db.name}; ${machine.cpus} × ${machine.cpuModel}; node ${machine.node}; ${machine.postgres}; ${busyBefore} cores busy before`);
  const nodeEnv = async (label: string) => {
    const dir = mkdtempSync(path.join(dataDir, `${label}-`));
    return { DATABASE_URL: db.url, NATS_URL, NATS_PREFIX: natsPrefix, JWT_SECRET: SECRET, LOG_LEVEL: "warn", METRICS_PORT: String(await freePort()), DATA_DIR: dir };
  };
  // The current node migrates the database before the load.
  const env = await nodeEnv("after");
  const cpuProf = flags["cpu-prof"] === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.resolve(flags["cpu-prof"])];
  const node = await ParleyNode.start({ label: BEFORE === null ? "search" : "after", env, nodeArgs: cpuProf });
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  onCleanup("close the bench pool", () => pool.end());
  console.log(`1. loading ${MESSAGES.toLocaleString("en")} messages into ${CONVERSATIONS} conversations (vocabulary ${VOCABULARY})`);
  const corpus = await corpusSource.load(pool);
  const visible = (await pool.query<{ n: string }>("select count(*) as n from message_search where conversation_id = any($1::uuid[])", [corpus.mine])).rows[0]!.n;
  console.log(`   loaded in ${corpus.loadSeconds} s; the searcher is in ${MEMBER_OF} conversations holding ${Number(visible).toLocaleString("en")} messages`);
  const before = BEFORE === null ? null : await ParleyNode.start({ label: "before", env: await nodeEnv("before"), root: BEFORE });
  const nodes = before === null ? [node] : [before, node];
  console.log(
    `2. SearchMessages latency, ${QUERIES} queries one at a time after ${WARMUP_QUERIES} warm-up queries` +
      (before === null ? "" : `, on the node from ${BEFORE} (before) and this checkout (after) in ${ROUNDS} alternating rounds`),
  );
  const search = await searchLatency(nodes, corpus, pool);
  await before?.stop();
  let lag = null;
  if (!flags["skip-lag"]) {
    console.log(`3. indexing lag under ${LAG_RATE} msg/s of sends for ${LAG_SECONDS} s`);
    lag = await indexingLag(node, corpus, pool, Number(env.METRICS_PORT));
  }
  await node.stop();
  const ok = Object.values(search).every((s) => s.errors.total === 0) && (lag === null || lag.lost === 0);
  const summary = { bench: "search", machine, before: BEFORE, messages: MESSAGES, conversations: CONVERSATIONS, memberOf: MEMBER_OF, searchableMessages: Number(visible), loadSeconds: corpus.loadSeconds, search, lag, ok };
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary, (_, v) => (v === Infinity ? "Infinity" : v)));
  return ok;
}

await runBench(main, 30 * 60_000);
