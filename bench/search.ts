/**
 * `npm run bench:search -- [--messages 1000000] [--conversations 1000] [--member-of 50] ...`
 *
 * Search on the PostgreSQL backend (OPENSEARCH_URL unset), over real PostgreSQL and NATS.
 *
 * 1. Load: a fresh database; one Parley node (src/main.ts, a child process) migrates it. The
 *    bench then writes the corpus straight into `messages` and `message_search` with bulk SQL
 *    (the same normalization the indexer uses, src/search/text-analysis.ts) and runs ANALYZE
 *    (which the backend's broad-query plan reads): N messages with a
 *    Zipf-distributed vocabulary (bench/lib/corpus.ts) over C group conversations, 4–24 words
 *    each, spread over 90 days; the indexes are built after the load. One user is a member of
 *    M of the conversations (~N·M/C messages they may search); each conversation has 5 more.
 * 2. Search latency: that user's SearchMessages over gRPC, one call at a time, for a mix of
 *    selective (rare word), medium, two-word, phrase, broad (very common word), broad in
 *    recency order, exclusion, sender-filtered and date-filtered queries. P50/P95/P99 overall
 *    and per kind.
 * 3. Indexing lag: sends at --lag-rate msg/s (open loop) for --lag-seconds into the user's
 *    conversations, through the durable search-indexer consumer; a poller reads
 *    message_search every 20 ms and records, per message, the time from its created_at (taken
 *    in the sending transaction) to its row being visible (= searchable). Also prints the
 *    server's own parley_search_index_lag_seconds histogram.
 *
 * Flags: --queries Q (default 600), --warmup-queries W (50), --lag-rate R (1000),
 * --lag-seconds S (10), --skip-lag, --database-url URL, --nats-url URL, --json FILE.
 * Everything is cleaned up (node stopped, database dropped, NATS streams deleted) even on failure.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { SearchOrder, SearchService, type SearchMessagesRequestSchema } from "../gen/parley/v1/search_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { newId } from "../src/ids.ts";
import { indexableText } from "../src/search/text-analysis.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { createRandom, message, vocabulary, zipfRank } from "./lib/corpus.ts";
import { createBenchDatabase, postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { natsPrefixForRun } from "./lib/nats.ts";
import { busyCores, CpuMeter, formatCpu } from "./lib/proc.ts";
import { ParleyNode } from "./lib/server.ts";
import { formatLatency, Samples } from "./lib/stats.ts";
import { ErrorTally, freePort, intFlag, round, sleep } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    messages: { type: "string", default: "1000000" },
    conversations: { type: "string", default: "1000" },
    "member-of": { type: "string", default: "50" },
    vocabulary: { type: "string", default: "20000" },
    queries: { type: "string", default: "600" },
    "warmup-queries": { type: "string", default: "50" },
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
const LAG_RATE = intFlag("lag-rate", flags["lag-rate"], 1, 20_000);
const LAG_SECONDS = intFlag("lag-seconds", flags["lag-seconds"], 1, 600);
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];

const SEARCHER = "bench-searcher";
const OTHER_MEMBERS = 5;
const USERS = 2000;
const LOAD_BATCH = 5000;
const CORPUS_DAYS = 90;
const LAG_POLL_MS = 20;
/** How long after the send window a message may take to show up before it counts as lost. */
const LAG_DRAIN_MS = 30_000;
const MAX_SENDS_IN_FLIGHT = 512;
const SECRET = randomBytes(32).toString("hex");
const CALL_TIMEOUT_MS = 10_000;

const random = createRandom(20261125);
const words = vocabulary(VOCABULARY, random);

interface Corpus {
  conversationIds: string[];
  /** The searcher's conversations. */
  mine: string[];
  loadSeconds: number;
}

/** Users, conversations and members through SQL, then messages and their search rows in bulk. */
async function load(pool: pg.Pool): Promise<Corpus> {
  const started = performance.now();
  const users = [SEARCHER, ...Array.from({ length: USERS }, (_, i) => `member-${i}`)];
  await pool.query(`insert into users (id) select unnest($1::text[])`, [users]);
  const conversationIds = Array.from({ length: CONVERSATIONS }, () => newId());
  const members = conversationIds.map((_, c) => {
    const set = new Set<string>(c < MEMBER_OF ? [SEARCHER] : []);
    while (set.size < OTHER_MEMBERS + (c < MEMBER_OF ? 1 : 0)) set.add(`member-${Math.floor(random() * USERS)}`);
    return [...set];
  });
  const perConversation = Math.ceil(MESSAGES / CONVERSATIONS);
  await pool.query(
    `insert into conversations (id, type, name, created_by, last_seq, member_count)
     select id, 2, 'bench ' || ord, 'member-0', $2, $3 from unnest($1::uuid[]) with ordinality as c(id, ord)`,
    [conversationIds, perConversation, OTHER_MEMBERS + 1],
  );
  await pool.query(
    `insert into conversation_members (conversation_id, user_id, role) select c, u, 1 from unnest($1::uuid[], $2::text[]) as m(c, u)`,
    [members.flatMap((list, c) => list.map(() => conversationIds[c]!)), members.flat()],
  );
  await pool.query("drop index message_search_tsv; drop index message_search_recent");
  const start = Date.now() - CORPUS_DAYS * 86_400_000;
  const stepMs = (CORPUS_DAYS * 86_400_000) / perConversation;
  let written = 0;
  let lastReport = performance.now();
  const batches = Array.from({ length: Math.ceil(MESSAGES / LOAD_BATCH) }, (_, b) => b);
  const writeBatch = async (b: number) => {
    const rows = { c: [] as string[], s: [] as number[], id: [] as string[], sender: [] as string[], cid: [] as string[], at: [] as string[], body: [] as string[], text: [] as string[] };
    for (let i = b * LOAD_BATCH; i < Math.min(MESSAGES, (b + 1) * LOAD_BATCH); i++) {
      const c = i % CONVERSATIONS;
      const seq = Math.floor(i / CONVERSATIONS) + 1;
      const at = Math.floor(start + seq * stepMs + random() * stepMs);
      const body = message(words, random);
      rows.c.push(conversationIds[c]!);
      rows.s.push(seq);
      rows.id.push(newId(at));
      rows.sender.push(members[c]![Math.floor(random() * members[c]!.length)]!);
      rows.cid.push(`load-${i}`);
      rows.at.push(new Date(at).toISOString());
      rows.body.push(body);
      rows.text.push(indexableText(body));
    }
    await pool.query(
      `insert into messages (conversation_id, seq, id, sender_id, client_message_id, created_at, body_text)
       select * from unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])`,
      [rows.c, rows.s, rows.id, rows.sender, rows.cid, rows.at, rows.body],
    );
    await pool.query(
      `insert into message_search (conversation_id, seq, message_id, version, sender_id, created_at, tsv)
       select c, s, m, 1, snd, t, to_tsvector('simple', txt)
       from unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[]) as r(c, s, m, snd, t, txt)`,
      [rows.c, rows.s, rows.id, rows.sender, rows.at, rows.text],
    );
    written += rows.c.length;
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      console.log(`   loaded ${written.toLocaleString("en")} messages (${round((performance.now() - started) / 1000, 0)} s)`);
    }
  };
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next < batches.length) await writeBatch(batches[next++]!);
  }));
  console.log(`   building the indexes (${round((performance.now() - started) / 1000, 0)} s so far)`);
  await pool.query("set maintenance_work_mem = '256MB'");
  await pool.query("create index message_search_tsv on message_search using gin (tsv)");
  await pool.query("create index message_search_recent on message_search (conversation_id, created_at desc, message_id desc)");
  await pool.query("analyze messages; analyze message_search; analyze conversation_members");
  return { conversationIds, mine: conversationIds.slice(0, MEMBER_OF), loadSeconds: round((performance.now() - started) / 1000, 1) };
}

type QueryKind = "selective" | "medium" | "two-words" | "phrase" | "broad" | "broad-recency" | "exclusion" | "sender" | "date-range";
/** How often each kind is asked, out of 100. */
const MIX: Record<QueryKind, number> = {
  selective: 25, medium: 20, "two-words": 15, phrase: 10, broad: 10, "broad-recency": 5, exclusion: 5, sender: 5, "date-range": 5,
};

/** A word whose rank is in [from, to] (1 = most common). */
function wordOfRank(from: number, to: number): string {
  return words[from - 1 + Math.floor(random() * (Math.min(to, words.length) - from + 1))]!;
}

function makeQuery(kind: QueryKind, corpus: Corpus, senders: readonly string[]): MessageInitShape<typeof SearchMessagesRequestSchema> {
  const medium = () => wordOfRank(30, 300);
  switch (kind) {
    case "selective":
      return { query: wordOfRank(3000, VOCABULARY) };
    case "medium":
      return { query: medium() };
    case "two-words":
      return { query: `${medium()} ${wordOfRank(100, 2000)}` };
    case "phrase": {
      const text = message(words, random).split(" ");
      const at = Math.floor(random() * (text.length - 1));
      return { query: `"${text[at]} ${text[at + 1]}"` };
    }
    case "broad":
      return { query: wordOfRank(1, 10) };
    case "broad-recency":
      return { query: wordOfRank(1, 10), order: SearchOrder.RECENCY };
    case "exclusion":
      return { query: `${wordOfRank(1, 10)} -${wordOfRank(11, 50)}` };
    case "sender":
      return { query: medium(), senderId: senders[Math.floor(random() * senders.length)]! };
    case "date-range": {
      const to = Date.now() - Math.floor(random() * CORPUS_DAYS) * 86_400_000;
      return { query: wordOfRank(1, 100), createdAfter: timestampFromMs(to - 7 * 86_400_000), createdBefore: timestampFromMs(to) };
    }
  }
}

function pickKind(): QueryKind {
  let roll = random() * 100;
  for (const [kind, weight] of Object.entries(MIX) as [QueryKind, number][]) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return "selective";
}

async function searchLatency(node: ParleyNode, corpus: Corpus, pool: pg.Pool) {
  const token = await mintToken({ secret: SECRET, issuer: "parley", audience: "parley", userId: SEARCHER, expiresIn: "2h" });
  const client = createClient(SearchService, grpcConnection(node.baseUrl).transport);
  const headers = { authorization: `Bearer ${token}` };
  const senders = (await pool.query<{ user_id: string }>("select distinct user_id from conversation_members where conversation_id = any($1::uuid[])", [corpus.mine])).rows.map((r) => r.user_id);
  const all = new Samples();
  const byKind = new Map<QueryKind, Samples>();
  const hits = new Map<QueryKind, number[]>();
  const errors = new ErrorTally();
  const meter = new CpuMeter({ server: node.pid });
  for (let i = 0; i < WARMUP_QUERIES + QUERIES; i++) {
    if (i === WARMUP_QUERIES) meter.start();
    const kind = pickKind();
    const request = makeQuery(kind, corpus, senders);
    const begun = performance.now();
    try {
      const response = await client.searchMessages(request, { headers, timeoutMs: CALL_TIMEOUT_MS });
      const ms = performance.now() - begun;
      if (i < WARMUP_QUERIES) continue;
      all.add(ms);
      if (!byKind.has(kind)) byKind.set(kind, new Samples());
      byKind.get(kind)!.add(ms);
      hits.set(kind, [...(hits.get(kind) ?? []), response.hits.length]);
    } catch (error) {
      errors.add(error, kind);
    }
  }
  const cpu = meter.stop();
  const summary = all.summary();
  console.log(`   all      ${formatLatency(summary)} ms`);
  const kinds: Record<string, unknown> = {};
  for (const kind of Object.keys(MIX) as QueryKind[]) {
    const samples = byKind.get(kind);
    if (!samples) continue;
    const counts = hits.get(kind) ?? [];
    const fullPages = counts.filter((n) => n === 20).length;
    kinds[kind] = { ...samples.summary(), fullPages, meanHits: round(counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length), 1) };
    console.log(`   ${kind.padEnd(14)} ${formatLatency(samples.summary())} ms; ${fullPages}/${counts.length} full pages of 20`);
  }
  if (errors.total > 0) console.log(`   errors: ${JSON.stringify(errors.toJSON())}`);
  console.log(`   CPU: ${formatCpu(cpu)}`);
  return { overall: summary, kinds, errors: errors.toJSON(), cpu };
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
          { conversationId: corpus.mine[n % corpus.mine.length]!, clientMessageId: `lag-${n}`, content: { case: "text", value: `lag probe ${n} ${message(words, random)}` } },
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
  const metricsPort = await freePort();
  const node = await ParleyNode.start({
    label: "search",
    env: {
      DATABASE_URL: db.url, NATS_URL, NATS_PREFIX: natsPrefix, JWT_SECRET: SECRET, LOG_LEVEL: "warn",
      METRICS_PORT: String(metricsPort), DATA_DIR: dataDir,
    },
  });
  const pool = new pg.Pool({ connectionString: db.url, max: 3 });
  onCleanup("close the bench pool", () => pool.end());
  console.log(`1. loading ${MESSAGES.toLocaleString("en")} messages into ${CONVERSATIONS} conversations (vocabulary ${VOCABULARY})`);
  const corpus = await load(pool);
  const visible = (await pool.query<{ n: string }>("select count(*) as n from message_search where conversation_id = any($1::uuid[])", [corpus.mine])).rows[0]!.n;
  console.log(`   loaded in ${corpus.loadSeconds} s; the searcher is in ${MEMBER_OF} conversations holding ${Number(visible).toLocaleString("en")} messages`);
  console.log(`2. SearchMessages latency, ${QUERIES} queries one at a time after ${WARMUP_QUERIES} warm-up queries`);
  const search = await searchLatency(node, corpus, pool);
  let lag = null;
  if (!flags["skip-lag"]) {
    console.log(`3. indexing lag under ${LAG_RATE} msg/s of sends for ${LAG_SECONDS} s`);
    lag = await indexingLag(node, corpus, pool, metricsPort);
  }
  await node.stop();
  const ok = search.errors.total === 0 && (lag === null || lag.lost === 0);
  const summary = { bench: "search", machine, messages: MESSAGES, conversations: CONVERSATIONS, memberOf: MEMBER_OF, searchableMessages: Number(visible), loadSeconds: corpus.loadSeconds, search, lag, ok };
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary, (_, v) => (v === Infinity ? "Infinity" : v)));
  return ok;
}

await runBench(main, 30 * 60_000);
