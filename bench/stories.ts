/**
 * `npm run bench:stories -- [--calls 2000] [--warmup 200] [--expiring 1000] [--ttl 5] ...`
 *
 * Stories against real PostgreSQL and NATS JetStream: one Parley node (src/main.ts as a child
 * process) on a fresh database `parley_bench_<random>` and a fresh NATS_PREFIX, both removed
 * at the end even on failure or Ctrl-C. Traffic goes to 127.0.0.1 only.
 *
 *   tray    Bulk-loaded with SQL (after the node migrated the database): --authors authors
 *           (default 1,000) with --stories-per-author live stories each (default 10, so 10,000),
 *           tiers mixed (a third each of PUBLIC, FOLLOWERS, CLOSE_FRIENDS), posted over the
 *           last 23 hours; the viewer follows --followed of them (default 500) and is a close
 *           friend of every fifth followed author; --others other users (default 2,000) each
 *           follow 20 random authors and viewed 2% of the stories; the viewer has seen 30% of
 *           the followed authors' stories. Then one client calls ListStoryFeed (first page,
 *           default page size 20) --calls times one after another over gRPC after --warmup
 *           calls, and reports P50/P95/P99. Also: the full walk through every page (page
 *           size 100) and the first page with include_public. Target: P95 < 20 ms.
 *   expiry  --expiring stories (default 1,000) posted through the API (UploadMedia +
 *           CreateStory, --post-concurrency at a time, default 4) by bulk-loaded authors (so each has followers to be
 *           told) on a node with STORY_TTL_SECONDS = --ttl; a poller, running from the first post
 *           on, reads which of them still exist every 20 ms and records, per story, deleted-at minus expires_at (lateness;
 *           the 20 ms polling adds up to 20 ms). The sweep runs every 10 minutes here, so the
 *           figure is the JetStream consumer's. Target: P99 < 100 ms.
 *
 * --before DIR: also start a node from the checkout in DIR (the previous release, say) on the same
 * database (the current node migrates it and the bulk load fills this release's structures too; an
 * older node ignores tables it does not know), each node on a NATS prefix of its own, and measure
 * both in one run: the tray calls alternate between the two in 10 rounds (each node warmed up
 * first), and the expiring stories are posted to each in turn, so each node's consumer expires
 * half of them. Both tables are printed with the ratio after/before, and the first pages of the
 * two nodes are compared (the same authors, order, flags and stories).
 *
 * --cpu-prof DIR: the current node writes a V8 CPU profile of the whole run into DIR when it stops
 * (summarize it with `node bench/lib/cpuprofile.ts FILE`).
 *
 * Flags: --scenario all|tray|expiry (default all)   --before DIR   --cpu-prof DIR   --post-concurrency   --authors --stories-per-author --followed --others --calls --warmup --expiring --ttl
 *        --database-url URL (default postgres://postgres@127.0.0.1:5432/postgres)
 *        --nats-url URL (default nats://127.0.0.1:4222)   --server-env K=V (repeatable)   --json FILE
 * The last line of stdout is the JSON summary.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import { StoryPrivacy } from "../gen/parley/v1/story_pb.ts";
import { MediaService } from "../gen/parley/v1/media_service_pb.ts";
import { StoryService } from "../gen/parley/v1/story_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { createBenchDatabase, postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { natsPrefixForRun } from "./lib/nats.ts";
import { benchNodeEnv, ParleyNode } from "./lib/server.ts";
import { formatLatency, Samples, type LatencySummary } from "./lib/stats.ts";
import { eachLimited, ErrorTally, intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS, sleep } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    authors: { type: "string", default: "1000" },
    "stories-per-author": { type: "string", default: "10" },
    followed: { type: "string", default: "500" },
    others: { type: "string", default: "2000" },
    calls: { type: "string", default: "2000" },
    warmup: { type: "string", default: "200" },
    expiring: { type: "string", default: "1000" },
    scenario: { type: "string", default: "all" },
    "post-concurrency": { type: "string", default: "4" },
    ttl: { type: "string", default: "5" },
    before: { type: "string" },
    "cpu-prof": { type: "string" },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}
const AUTHORS = intFlag("authors", flags.authors, 1, 1_000_000);
const PER_AUTHOR = intFlag("stories-per-author", flags["stories-per-author"], 1, 1000);
const FOLLOWED = intFlag("followed", flags.followed, 1, AUTHORS);
const OTHERS = intFlag("others", flags.others, 0, 1_000_000);
const CALLS = intFlag("calls", flags.calls, 1, 1_000_000);
const WARMUP = intFlag("warmup", flags.warmup, 0, 1_000_000);
const EXPIRING = intFlag("expiring", flags.expiring, 1, 100_000);
const TTL_SECONDS = intFlag("ttl", flags.ttl, 1, 3600);
const POST_CONCURRENCY = intFlag("post-concurrency", flags["post-concurrency"], 1, 256);
const SCENARIO = flags.scenario;
if (!["all", "tray", "expiry"].includes(SCENARIO)) throw new Error("--scenario must be all, tray or expiry");
const BEFORE_DIR = flags.before ? path.resolve(flags.before) : null;
if (BEFORE_DIR && !existsSync(path.join(BEFORE_DIR, "src/main.ts"))) throw new Error(`--before ${BEFORE_DIR}: no src/main.ts there`);
/** Rounds the measured calls are split into, alternating between the nodes. */
const ROUNDS = BEFORE_DIR ? 10 : 1;
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);

const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const SECRET = randomBytes(32).toString("base64url");
const CALL_TIMEOUT_MS = 10_000;
const VIEWER = "viewer";
/** A 1×1 PNG: what each expiring story shows. */
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=", "base64");

// Generous: bulk loading alone takes minutes on a busy machine.

async function clientsFor(baseUrl: string, userId: string) {
  const { transport } = grpcConnection(baseUrl);
  const token = await mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId, expiresIn: "2h" });
  const headers = { authorization: `Bearer ${token}` };
  const options = { headers, timeoutMs: CALL_TIMEOUT_MS };
  return { stories: createClient(StoryService, transport), media: createClient(MediaService, transport), options };
}

/** Users, graph, media, stories and views, set-based (a few statements, not an API call each). */
async function bulkLoad(url: string): Promise<void> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const total = AUTHORS * PER_AUTHOR;
    await db.query("begin");
    await db.query(`insert into users (id) select 'author-' || i from generate_series(0, $1 - 1) i`, [AUTHORS]);
    await db.query(`insert into users (id) select 'other-' || i from generate_series(0, $1 - 1) i`, [OTHERS]);
    await db.query(`insert into users (id) values ($1)`, [VIEWER]);
    await db.query(`insert into follows (follower_id, followee_id) select $1, 'author-' || i from generate_series(0, $2 - 1) i`, [VIEWER, FOLLOWED]);
    await db.query(`insert into close_friends (owner_id, friend_id) select 'author-' || i, $1 from generate_series(0, $2 - 1, 5) i`, [VIEWER, FOLLOWED]);
    await db.query(
      `insert into follows (follower_id, followee_id)
       select distinct 'other-' || o, 'author-' || floor(random() * $2)::int from generate_series(0, $1 - 1) o, generate_series(1, 20)
       on conflict do nothing`,
      [OTHERS, AUTHORS],
    );
    // Story k of author a: privacy cycles through the tiers, created over the last 23 hours.
    await db.query(
      `create temporary table seed on commit drop as
       select gen_random_uuid() as story_id, gen_random_uuid() as media_id, 'author-' || (n / $2) as author_id,
              1 + (n % 3) as privacy, now() - random() * interval '23 hours' as created_at
       from generate_series(0, $1 - 1) n`,
      [total, PER_AUTHOR],
    );
    await db.query(`insert into media (id, owner_id, type, content_type, size_bytes, created_at)
                    select media_id, author_id, 2, 'image/png', 70, created_at from seed`);
    await db.query(`insert into stories (id, author_id, media_id, caption, privacy, created_at, expires_at)
                    select story_id, author_id, media_id, 'bench story', privacy, created_at, created_at + interval '24 hours' from seed`);
    await db.query(
      `insert into story_views (story_id, viewer_id, viewed_at)
       select s.story_id, 'other-' || floor(random() * $1)::int, s.created_at + interval '1 minute'
       from seed s, generate_series(1, greatest(1, $1 / 50)) on conflict do nothing`,
      [Math.max(OTHERS, 1)],
    );
    await db.query(
      `insert into story_views (story_id, viewer_id, viewed_at)
       select story_id, $1, created_at + interval '2 minutes' from seed
       where author_id in (select followee_id from follows where follower_id = $1) and random() < 0.3`,
      [VIEWER],
    );
    await db.query(`update stories s set view_count = v.n from (select story_id, count(*) n from story_views group by story_id) v where v.story_id = s.id`);
    await fillTray(db);
    await db.query("commit");
    await db.query("analyze");
  } finally {
    await db.end();
  }
}

/**
 * The tray's summary rows (migration 0016), as its backfill computes them, for the rows loaded
 * above with SQL (the API keeps them itself). Skipped on a schema without them.
 */
async function fillTray(db: pg.Client): Promise<void> {
  const { rows } = await db.query(`select to_regclass('story_tray') is not null as present`);
  if (!rows[0].present) return;
  await db.query(`insert into story_tray (author_id, privacy, story_count, newest_at, first_expires_at, last_expires_at)
                  select author_id, privacy, count(*), max(created_at), min(expires_at), max(expires_at) from stories group by author_id, privacy`);
  await db.query(`insert into story_tray_views (viewer_id, author_id, privacy, viewed_count)
                  select v.viewer_id, s.author_id, s.privacy, count(*) from story_views v join stories s on s.id = v.story_id
                  group by v.viewer_id, s.author_id, s.privacy`);
}

async function measureInto(samples: Samples, n: number, call: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call();
    samples.add(performance.now() - start);
  }
}

/** A node under measurement, with a name for the tables ("before", "after"). */
interface Target {
  name: string;
  node: ParleyNode;
}

/**
 * Runs `call` n times against every target: with one target in one go, with two in ROUNDS
 * rounds of n / ROUNDS calls each, the order of the targets swapped every round.
 */
async function alternate(targets: readonly Target[], n: number, call: (target: Target) => () => Promise<unknown>): Promise<Map<string, LatencySummary>> {
  const samples = new Map(targets.map((t) => [t.name, new Samples(n)]));
  const rounds = Math.min(ROUNDS, n);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    const calls = Math.floor(n / rounds) + (r < n % rounds ? 1 : 0);
    for (const target of order) await measureInto(samples.get(target.name)!, calls, call(target));
  }
  return new Map([...samples].map(([name, s]) => [name, s.summary()]));
}

/** A first page as plain data, to compare what two nodes answer. */
function pageShape(entries: readonly { authorId: string; hasUnseen: boolean; latestStoryAt?: { seconds: bigint; nanos: number }; stories: readonly { id: string; seen: boolean }[] }[]) {
  return JSON.stringify(entries.map((e) => [e.authorId, e.hasUnseen, String(e.latestStoryAt?.seconds), e.latestStoryAt?.nanos, e.stories.map((s) => [s.id, s.seen])]));
}

async function trayScenario(targets: readonly Target[]) {
  const clients = new Map(await Promise.all(targets.map(async (t) => [t.name, await clientsFor(t.node.baseUrl, VIEWER)] as const)));
  const firstPages = new Map<string, string>();
  const walks = new Map<string, { pages: number; authors: number; stories: number }>();
  for (const t of targets) {
    const { stories, options } = clients.get(t.name)!;
    firstPages.set(t.name, pageShape((await stories.listStoryFeed({}, options)).entries));
    await measureInto(new Samples(WARMUP), WARMUP, () => stories.listStoryFeed({}, options));
  }
  const firstPage = (t: Target) => {
    const { stories, options } = clients.get(t.name)!;
    return () => stories.listStoryFeed({}, options);
  };
  const walk = (t: Target) => {
    const { stories, options } = clients.get(t.name)!;
    return async () => {
      const shape = { pages: 0, authors: 0, stories: 0 };
      let token = "";
      do {
        const page = await stories.listStoryFeed({ pageSize: 100, pageToken: token }, options);
        shape.pages++;
        shape.authors += page.entries.length;
        shape.stories += page.entries.reduce((sum, e) => sum + e.stories.length, 0);
        token = page.nextPageToken;
      } while (token !== "");
      walks.set(t.name, shape);
    };
  };
  const withPublic = (t: Target) => {
    const { stories, options } = clients.get(t.name)!;
    return () => stories.listStoryFeed({ includePublic: true }, options);
  };
  const first = await alternate(targets, CALLS, firstPage);
  const fullWalk = await alternate(targets, Math.max(1, Math.floor(CALLS / 20)), walk);
  const pub = await alternate(targets, Math.max(1, Math.floor(CALLS / 4)), withPublic);
  const results: Record<string, TrayResult> = {};
  for (const t of targets) {
    const entriesOnFirstPage = (JSON.parse(firstPages.get(t.name)!) as unknown[]).length;
    results[t.name] = { entriesOnFirstPage, walk: walks.get(t.name)!, firstPage: first.get(t.name)!, fullWalk: fullWalk.get(t.name)!, withPublic: pub.get(t.name)! };
  }
  return { results, samePages: new Set(firstPages.values()).size === 1 };
}

interface TrayResult {
  entriesOnFirstPage: number;
  walk: { pages: number; authors: number; stories: number };
  firstPage: LatencySummary;
  fullWalk: LatencySummary;
  withPublic: LatencySummary;
}

async function expiryScenario(targets: readonly Target[], url: string) {
  const authors = Array.from({ length: Math.min(AUTHORS, 100) }, (_, i) => `author-${i}`);
  const clients = new Map(
    await Promise.all(targets.flatMap((t) => authors.map(async (a) => [`${t.name}/${a}`, await clientsFor(t.node.baseUrl, a)] as const))),
  );
  // Watched from the first post on: a story can expire while later ones are still being posted.
  const remaining = new Map<string, { deadline: number; target: string }>();
  const lateness = new Map(targets.map((t) => [t.name, new Samples(EXPIRING)]));
  const posted = new Map(targets.map((t) => [t.name, 0]));
  let posting = true;
  const db = new pg.Client({ connectionString: url });
  db.on("error", () => {}); // the cleanup drops the database under it on failure
  await db.connect();
  const watch = (async () => {
    let giveUpAt = Infinity;
    while ((posting || remaining.size > 0) && Date.now() < giveUpAt) {
      if (remaining.size > 0) {
        // Only the ids asked about: a story posted while the query ran is not gone, just new.
        const asked = [...remaining.keys()];
        const { rows } = await db.query<{ id: string }>("select id from stories where id = any($1::uuid[])", [asked]);
        const now = Date.now();
        const alive = new Set(rows.map((r) => r.id));
        for (const id of asked) {
          if (alive.has(id)) continue;
          const { deadline, target } = remaining.get(id)!;
          lateness.get(target)!.add(now - deadline);
          remaining.delete(id);
        }
      }
      if (!posting && giveUpAt === Infinity) giveUpAt = Math.max(Date.now(), ...[...remaining.values()].map((r) => r.deadline)) + 30_000;
      await sleep(20);
    }
  })();
  const started = performance.now();
  const errors = new ErrorTally();
  try {
    await eachLimited(Array.from({ length: EXPIRING }, (_, i) => i), POST_CONCURRENCY, async (i) => {
      // Story i goes to node i mod n and author i mod 100 (each node's consumer expires its own).
      const target = targets[i % targets.length]!;
      const { media, stories, options } = clients.get(`${target.name}/${authors[i % authors.length]!}`)!;
      try {
        const uploaded = (await media.uploadMedia({ data: PNG }, options)).media!;
        const privacy = [StoryPrivacy.PUBLIC, StoryPrivacy.FOLLOWERS, StoryPrivacy.CLOSE_FRIENDS][i % 3]!;
        const story = (await stories.createStory({ mediaId: uploaded.id, privacy, caption: "expiring" }, options)).story!;
        const expiresAt = story.expiresAt!;
        remaining.set(story.id, { deadline: Number(expiresAt.seconds) * 1000 + expiresAt.nanos / 1e6, target: target.name });
        posted.set(target.name, posted.get(target.name)! + 1);
      } catch (error) {
        errors.add(error); // a post that failed (e.g. past its deadline on a busy machine) has nothing to expire
      }
    });
  } finally {
    posting = false;
  }
  const postSeconds = (performance.now() - started) / 1000;
  try {
    await watch;
  } finally {
    await db.end();
  }
  const left = (name: string) => [...remaining.values()].filter((r) => r.target === name).length;
  return {
    failedPosts: errors.toJSON(),
    postSeconds: round(postSeconds),
    results: Object.fromEntries(targets.map((t) => [t.name, { posted: posted.get(t.name)!, notDeleted: left(t.name), lateness: lateness.get(t.name)!.summary() }])),
  };
}

/** "after/before" of each percentile. */
function ratios(before: LatencySummary, after: LatencySummary): string {
  return (["p50", "p95", "p99"] as const).map((k) => `${k} ×${round(after[k] / before[k])}`).join("   ");
}

/** Prints one measure for every target, with the ratio when there are two. */
function printMeasure(label: string, byTarget: ReadonlyMap<string, LatencySummary>): void {
  console.log(label);
  for (const [name, summary] of byTarget) console.log(`   ${name.padEnd(6)} ${formatLatency(summary)}`);
  const before = byTarget.get("before");
  const after = byTarget.get("after");
  if (before && after) console.log(`   after/before: ${ratios(before, after)}`);
}

/**
 * The run's database, data dir and nodes: this checkout's node ("after"; it migrates the
 * database) and, with --before, one from that checkout, each on a NATS prefix of its own.
 */
async function startNodes() {
  const database = await createBenchDatabase(ADMIN_URL);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "parley-stories-bench-"));
  onCleanup("remove the data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  const env = { ...keyValues(flags["server-env"], "server-env"), STORY_TTL_SECONDS: String(TTL_SECONDS), STORY_SWEEP_INTERVAL_SECONDS: "600" };
  const start = async (name: string, root: string | undefined, nodeArgs: string[] = []) => {
    const natsPrefix = natsPrefixForRun(NATS_URL);
    const run = { databaseUrl: database.url, natsUrl: NATS_URL, natsPrefix, secret: SECRET, issuer: ISSUER, audience: AUDIENCE, dataDir };
    const logFile = path.join(os.tmpdir(), `parley-stories-bench-${natsPrefix}-${name}.log`);
    const node = await ParleyNode.start({ label: name, root, logFile, nodeArgs, env: { ...benchNodeEnv(run), ...env } });
    console.log(`node "${name}"${root ? ` from ${root}` : ""}: pid ${node.pid}, its log in ${logFile}`);
    return { name, node };
  };
  const after = await start("after", undefined, flags["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", path.resolve(flags["cpu-prof"])] : []);
  const targets: Target[] = BEFORE_DIR ? [await start("before", BEFORE_DIR), after] : [after];
  return { database, targets };
}

async function main() {
  const { database, targets } = await startNodes();
  console.log(`bench:stories on ${await postgresVersion(database.url)}`);
  const failed = Promise.race(targets.map((t) => t.node.failed));
  const loadStart = performance.now();
  await bulkLoad(database.url);
  console.log(`loaded ${AUTHORS * PER_AUTHOR} stories of ${AUTHORS} authors, ${OTHERS} other users, in ${round((performance.now() - loadStart) / 1000)} s`);

  const tray = SCENARIO === "expiry" ? null : await Promise.race([failed, trayScenario(targets)]);
  if (tray) {
    const after = tray.results.after!;
    const pick = (k: "firstPage" | "fullWalk" | "withPublic") => new Map(targets.map((t) => [t.name, tray.results[t.name]![k]]));
    printMeasure(`ListStoryFeed (viewer follows ${FOLLOWED} authors; first page of ${after.entriesOnFirstPage} authors), ${CALLS} calls per node:`, pick("firstPage"));
    console.log(`   target P95 < 20 ms: ${after.firstPage.p95 < 20 ? "MET" : "NOT MET"}`);
    printMeasure(`whole tray, page size 100 (${after.walk.pages} pages, ${after.walk.authors} authors, ${after.walk.stories} stories):`, pick("fullWalk"));
    printMeasure(`first page with include_public:`, pick("withPublic"));
    if (targets.length > 1) console.log(`first pages of both nodes ${tray.samePages ? "are the same" : "DIFFER"}`);
  }

  const expiry = SCENARIO === "tray" ? null : await Promise.race([failed, expiryScenario(targets, database.url)]);
  if (expiry) {
    const f = expiry.failedPosts;
    console.log(`expiry: stories posted in ${expiry.postSeconds} s with TTL ${TTL_SECONDS} s (failed posts: ${f.total}${f.total ? ` ${f.samples.join("; ")}` : ""}):`);
    printMeasure(
      `lateness deadline → rows deleted (${targets.map((t) => `${t.name}: ${expiry.results[t.name]!.posted} posted, ${expiry.results[t.name]!.notDeleted} not deleted`).join("; ")}):`,
      new Map(targets.map((t) => [t.name, expiry.results[t.name]!.lateness])),
    );
    const after = expiry.results.after!;
    console.log(`   target P99 < 100 ms: ${after.lateness.p99 < 100 && after.notDeleted === 0 ? "MET" : "NOT MET"}`);
  }

  const summary = JSON.stringify({ bench: "stories", tray, expiry });
  if (flags.json) writeFileSync(flags.json, summary);
  console.log(summary);
}

await runBench(main, 1000 * (900 + (CALLS / 10 + EXPIRING / 5) * (BEFORE_DIR ? 2 : 1) + TTL_SECONDS * 2));
