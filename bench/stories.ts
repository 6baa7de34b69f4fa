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
 *           figure is the JetStream consumer's. Target: P99 < 2 s.
 *
 * Flags: --scenario all|tray|expiry (default all)   --post-concurrency   --authors --stories-per-author --followed --others --calls --warmup --expiring --ttl
 *        --database-url URL (default postgres://postgres@127.0.0.1:5432/postgres)
 *        --nats-url URL (default nats://127.0.0.1:4222)   --server-env K=V (repeatable)   --json FILE
 * The last line of stdout is the JSON summary.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import { StoryPrivacy } from "../gen/parley/v1/story_pb.ts";
import { MediaService } from "../gen/parley/v1/media_service_pb.ts";
import { StoryService } from "../gen/parley/v1/story_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { runBench } from "./lib/cleanup.ts";
import { postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { startSingleNodeRun } from "./lib/server.ts";
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
    await db.query("commit");
    await db.query("analyze");
  } finally {
    await db.end();
  }
}

async function measure(n: number, call: () => Promise<unknown>): Promise<LatencySummary> {
  const samples = new Samples(n);
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call();
    samples.add(performance.now() - start);
  }
  return samples.summary();
}

async function trayScenario(baseUrl: string) {
  const { stories, options } = await clientsFor(baseUrl, VIEWER);
  const first = await stories.listStoryFeed({}, options);
  const entries = first.entries.length;
  let pages = 0;
  let authorsSeen = 0;
  let storiesSeen = 0;
  const walk = async () => {
    pages = authorsSeen = storiesSeen = 0;
    let token = "";
    do {
      const page = await stories.listStoryFeed({ pageSize: 100, pageToken: token }, options);
      pages++;
      authorsSeen += page.entries.length;
      storiesSeen += page.entries.reduce((sum, e) => sum + e.stories.length, 0);
      token = page.nextPageToken;
    } while (token !== "");
  };
  await measure(WARMUP, () => stories.listStoryFeed({}, options));
  const firstPage = await measure(CALLS, () => stories.listStoryFeed({}, options));
  const fullWalk = await measure(Math.max(1, Math.floor(CALLS / 20)), walk);
  const withPublic = await measure(Math.max(1, Math.floor(CALLS / 4)), () => stories.listStoryFeed({ includePublic: true }, options));
  return { entriesOnFirstPage: entries, walk: { pages, authors: authorsSeen, stories: storiesSeen }, firstPage, fullWalk, withPublic };
}

async function expiryScenario(baseUrl: string, url: string) {
  const authors = Array.from({ length: Math.min(AUTHORS, 100) }, (_, i) => `author-${i}`);
  const clients = new Map(await Promise.all(authors.map(async (a) => [a, await clientsFor(baseUrl, a)] as const)));
  // Watched from the first post on: a story can expire while later ones are still being posted.
  const remaining = new Map<string, number>();
  const lateness = new Samples(EXPIRING);
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
          lateness.add(now - remaining.get(id)!);
          remaining.delete(id);
        }
      }
      if (!posting && giveUpAt === Infinity) giveUpAt = Math.max(Date.now(), ...remaining.values()) + 30_000;
      await sleep(20);
    }
  })();
  const started = performance.now();
  const errors = new ErrorTally();
  try {
    await eachLimited(Array.from({ length: EXPIRING }, (_, i) => i), POST_CONCURRENCY, async (i) => {
      const { media, stories, options } = clients.get(authors[i % authors.length]!)!;
      try {
        const uploaded = (await media.uploadMedia({ data: PNG }, options)).media!;
        const privacy = [StoryPrivacy.PUBLIC, StoryPrivacy.FOLLOWERS, StoryPrivacy.CLOSE_FRIENDS][i % 3]!;
        const story = (await stories.createStory({ mediaId: uploaded.id, privacy, caption: "expiring" }, options)).story!;
        const expiresAt = story.expiresAt!;
        remaining.set(story.id, Number(expiresAt.seconds) * 1000 + expiresAt.nanos / 1e6);
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
  return { posted: lateness.count + remaining.size, failedPosts: errors.toJSON(), postSeconds: round(postSeconds), notDeleted: remaining.size, lateness: lateness.summary() };
}

async function main() {
  const { database, node, logFile } = await startSingleNodeRun("stories", {
    adminUrl: ADMIN_URL,
    natsUrl: NATS_URL,
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    env: { ...keyValues(flags["server-env"], "server-env"), STORY_TTL_SECONDS: String(TTL_SECONDS), STORY_SWEEP_INTERVAL_SECONDS: "600" },
  });
  console.log(`bench:stories on ${await postgresVersion(database.url)}, node pid ${node.pid}, its log in ${logFile}`);
  const loadStart = performance.now();
  await bulkLoad(database.url);
  console.log(`loaded ${AUTHORS * PER_AUTHOR} stories of ${AUTHORS} authors, ${OTHERS} other users, in ${round((performance.now() - loadStart) / 1000)} s`);

  const tray = SCENARIO === "expiry" ? null : await Promise.race([node.failed, trayScenario(node.baseUrl)]);
  if (tray) {
    console.log(`ListStoryFeed (viewer follows ${FOLLOWED} authors; first page of ${tray.entriesOnFirstPage} authors), ${CALLS} calls: ${formatLatency(tray.firstPage)}`);
    console.log(`   target P95 < 20 ms: ${tray.firstPage.p95 < 20 ? "MET" : "NOT MET"}`);
    console.log(`   whole tray, page size 100 (${tray.walk.pages} pages, ${tray.walk.authors} authors, ${tray.walk.stories} stories): ${formatLatency(tray.fullWalk)}`);
    console.log(`   first page with include_public: ${formatLatency(tray.withPublic)}`);
  }

  const expiry = SCENARIO === "tray" ? null : await Promise.race([node.failed, expiryScenario(node.baseUrl, database.url)]);
  if (expiry) {
    console.log(`expiry: ${expiry.posted} stories posted (failed posts: ${expiry.failedPosts.total}${expiry.failedPosts.total ? ` ${expiry.failedPosts.samples.join("; ")}` : ""}) in ${expiry.postSeconds} s with TTL ${TTL_SECONDS} s; lateness deadline → rows deleted: ${formatLatency(expiry.lateness)}; not deleted: ${expiry.notDeleted}`);
    console.log(`   target P99 < 2 s: ${expiry.lateness.p99 < 2000 && expiry.notDeleted === 0 ? "MET" : "NOT MET"}`);
  }

  const summary = JSON.stringify({ bench: "stories", tray, expiry });
  if (flags.json) writeFileSync(flags.json, summary);
  console.log(summary);
}

await runBench(main, 1000 * (900 + CALLS / 10 + EXPIRING / 5 + TTL_SECONDS * 2));
