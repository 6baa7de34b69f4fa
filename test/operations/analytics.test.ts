/**
 * AnalyticsService, from the contract's side: after a mixed workload (messages from several users
 * in several conversations, reactions added and taken back, stories posted and viewed) the hourly
 * and daily figures equal what was done, as the raw tables record it; RebuildAnalytics recomputes
 * the same figures, and counting goes on after it. Run on one node everywhere and across two
 * nodes sharing PostgreSQL and NATS when they are available.
 *
 * Also who may ask for what (a conversation's figures are NOT_FOUND to anyone but its admins and
 * operators; deployment figures and rebuilds are operator-only) and which ranges are refused.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { isDeepStrictEqual } from "node:util";
import path from "node:path";
import { randomUUID } from "node:crypto";
import pg from "pg";
import { Code } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Granularity, type StoryBucket } from "../../gen/parley/v1/analytics_service_pb.ts";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId, type Clients, type RemoteServer, type TestServer } from "../helpers/test-server.ts";
import { multiNodeAvailable, startCluster, startRealtimeServer } from "../helpers/realtime.ts";
import { expectCode, expectOneOfCodes } from "../helpers/expect.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { postStory } from "../stories/support.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Figures lag the log by "a few seconds"; this is how long a test waits for them to agree. */
const FIGURES_DEADLINE_MS = 15_000;
const OPERATOR = { roles: ["operator"] as const };
/**
 * The contract (ConversationBucket.reactions): "Reactions added in the bucket that are still
 * there: one taken back, or erased with its deleted message, no longer counts" — what a rebuild
 * from the raw tables can count too.
 */
const countedReactions = (ledger: Ledger) => ledger.reactions.filter((r) => !r.removed);

/** What the workload did, with the server's timestamps where the API hands them out. */
interface Ledger {
  messages: { conversationId: string; senderId: string; seq: bigint; at: number }[];
  /** Every reaction that was added (added = true), including those taken back later. */
  reactions: { conversationId: string; seq: bigint; emoji: string; userId: string; at: number; removed: boolean }[];
  stories: { storyId: string; authorId: string; at: number }[];
  /** First views by someone other than the author. */
  views: { storyId: string; authorId: string; viewerId: string; at: number }[];
  storyReactions: { storyId: string; authorId: string; at: number }[];
}

function emptyLedger(): Ledger {
  return { messages: [], reactions: [], stories: [], views: [], storyReactions: [] };
}

function bucketOf(ms: number, size: number): number {
  return Math.floor(ms / size) * size;
}

/** The time of a call that returns no timestamp: the middle of its round trip. */
async function timed<T>(call: () => Promise<T>): Promise<{ result: T; at: number }> {
  const before = Date.now();
  const result = await call();
  return { result, at: Math.round((before + Date.now()) / 2) };
}

interface ConversationRow { start: number; messages: number; activeMembers: number; reactions: number }
interface StoryRow { start: number; storiesPosted: number; views: number; reach: number; reactions: number }
interface DeploymentRow { start: number; messages: number; activeUsers: number; reactions: number; storiesPosted: number; storyViews: number }

/** Groups items into buckets and builds one row per non-empty bucket, oldest first. */
function rowsBy<I, R>(items: readonly I[], atOf: (i: I) => number, size: number, build: (start: number, inBucket: I[]) => R): R[] {
  const groups = new Map<number, I[]>();
  for (const item of items) {
    const start = bucketOf(atOf(item), size);
    groups.set(start, [...(groups.get(start) ?? []), item]);
  }
  return [...groups.keys()].sort((a, b) => a - b).map((start) => build(start, groups.get(start)!));
}

type Tagged =
  | { kind: "message"; at: number; who: string }
  | { kind: "reaction"; at: number; who: string }
  | { kind: "story"; at: number; who: string }
  | { kind: "view"; at: number; who: string }
  | { kind: "storyReaction"; at: number; who: string };

function count(items: Tagged[], kind: Tagged["kind"]): number {
  return items.filter((i) => i.kind === kind).length;
}
function distinct(items: Tagged[], kind: Tagged["kind"]): number {
  return new Set(items.filter((i) => i.kind === kind).map((i) => i.who)).size;
}

function expectedConversation(ledger: Ledger, conversationId: string, size: number): ConversationRow[] {
  const items: Tagged[] = [
    ...ledger.messages.filter((m) => m.conversationId === conversationId).map((m) => ({ kind: "message" as const, at: m.at, who: m.senderId })),
    ...countedReactions(ledger).filter((r) => r.conversationId === conversationId).map((r) => ({ kind: "reaction" as const, at: r.at, who: r.userId })),
  ];
  return rowsBy(items, (i) => i.at, size, (start, b) => ({
    start,
    messages: count(b, "message"),
    activeMembers: distinct(b, "message"),
    reactions: count(b, "reaction"),
  }));
}

/**
 * The contract does not say whether a view (and a story reaction) is counted in the bucket of
 * when it happened or of when its story was posted; both readings are accepted. They differ only
 * when a story and its views fall on the two sides of a bucket boundary.
 */
type StoryTiming = "at the event" | "at the story's posting";
const STORY_TIMINGS: StoryTiming[] = ["at the event", "at the story's posting"];

function timeOf(ledger: Ledger, timing: StoryTiming, storyId: string | undefined, at: number): number {
  if (timing === "at the event" || storyId === undefined) return at;
  return ledger.stories.find((s) => s.storyId === storyId)?.at ?? at;
}

function expectedStories(ledger: Ledger, authorId: string, size: number, timing: StoryTiming): StoryRow[] {
  const items: Tagged[] = [
    ...ledger.stories.filter((s) => s.authorId === authorId).map((s) => ({ kind: "story" as const, at: s.at, who: s.authorId })),
    ...ledger.views.filter((v) => v.authorId === authorId).map((v) => ({ kind: "view" as const, at: timeOf(ledger, timing, v.storyId, v.at), who: v.viewerId })),
    ...ledger.storyReactions.filter((r) => r.authorId === authorId).map((r) => ({ kind: "storyReaction" as const, at: timeOf(ledger, timing, r.storyId, r.at), who: r.authorId })),
  ];
  return rowsBy(items, (i) => i.at, size, (start, b) => ({
    start,
    storiesPosted: count(b, "story"),
    views: count(b, "view"),
    reach: distinct(b, "view"),
    reactions: count(b, "storyReaction"),
  }));
}

function expectedDeployment(ledger: Ledger, size: number, timing: StoryTiming): DeploymentRow[] {
  // Story reactions are not "reactions added to messages": they are left out here on purpose.
  const items: Tagged[] = [
    ...ledger.messages.map((m) => ({ kind: "message" as const, at: m.at, who: m.senderId })),
    ...countedReactions(ledger).map((r) => ({ kind: "reaction" as const, at: r.at, who: r.userId })),
    ...ledger.stories.map((s) => ({ kind: "story" as const, at: s.at, who: s.authorId })),
    ...ledger.views.map((v) => ({ kind: "view" as const, at: timeOf(ledger, timing, v.storyId, v.at), who: v.viewerId })),
  ];
  return rowsBy(items, (i) => i.at, size, (start, b) => ({
    start,
    messages: count(b, "message"),
    activeUsers: distinct(b, "message"),
    reactions: count(b, "reaction"),
    storiesPosted: count(b, "story"),
    storyViews: count(b, "view"),
  }));
}

/** The range around the workload, in the granularity's own units. */
function rangeAround(startedAt: number, granularity: Granularity) {
  const size = granularity === Granularity.DAY ? DAY_MS : HOUR_MS;
  return {
    from: timestampFromMs(bucketOf(startedAt, size) - size),
    to: timestampFromMs(bucketOf(Date.now(), size) + 2 * size),
    granularity,
  };
}

const GRANULARITIES = [
  { name: "hourly", granularity: Granularity.HOUR, size: HOUR_MS },
  { name: "daily", granularity: Granularity.DAY, size: DAY_MS },
] as const;

/** Users, their conversations and which node and protocol each call goes through. */
interface Workload {
  nodes: RemoteServer[];
  users: string[];
  operator: string;
  /** Group 1 (admin users[0]), group 2 (admin users[1]), and a DIRECT conversation of users[2] and users[3]. */
  conversations: { id: string; admin: string | null }[];
  ledger: Ledger;
  startedAt: number;
  /** Clients of a user for the k-th call: spread over the nodes and over gRPC and Connect. */
  clients(user: string, k: number): Clients;
}

async function prepareWorkload(nodes: RemoteServer[]): Promise<Workload> {
  const startedAt = Date.now();
  const users = await newUsers(nodes[0]!, 6, "an");
  const operator = uniqueId("operator");
  const clients = (user: string, k: number): Clients => {
    const i = users.indexOf(user) + k;
    return nodes[i % nodes.length]!.clientsFor(user, MAIN_PROTOCOLS[Math.floor(i / nodes.length) % 2]!);
  };
  const [u0, u1, u2, u3, u4, u5] = users as [string, string, string, string, string, string];
  const g1 = await createGroup(clients(u0, 0), [u1, u2, u3, u4], "analytics one");
  const g2 = await createGroup(clients(u1, 1), [u0, u5], "analytics two");
  const direct = await createDirect(clients(u2, 0), u3);
  return {
    nodes,
    users,
    operator,
    conversations: [
      { id: g1.id, admin: u0 },
      { id: g2.id, admin: u1 },
      { id: direct.id, admin: null },
    ],
    ledger: emptyLedger(),
    startedAt,
    clients,
  };
}

async function send(w: Workload, conversationId: string, sender: string, k: number) {
  const m = await sendText(w.clients(sender, k), conversationId, `analytics ${randomUUID()}`);
  w.ledger.messages.push({ conversationId, senderId: sender, seq: m.seq, at: timestampMs(m.createdAt!) });
  return m;
}

async function react(w: Workload, conversationId: string, seq: bigint, user: string, emoji: string, k: number) {
  const { result, at } = await timed(() => w.clients(user, k).messages.addReaction({ conversationId, seq, emoji }));
  assert.equal(result.added, true, `${user} reacts ${emoji} to ${seq}`);
  w.ledger.reactions.push({ conversationId, seq, emoji, userId: user, at, removed: false });
}

async function unreact(w: Workload, conversationId: string, seq: bigint, user: string, emoji: string, k: number) {
  const res = await w.clients(user, k).messages.removeReaction({ conversationId, seq, emoji });
  assert.equal(res.removed, true, `${user} takes back ${emoji} on ${seq}`);
  const entry = w.ledger.reactions.find((r) => r.conversationId === conversationId && r.seq === seq && r.emoji === emoji && r.userId === user && !r.removed);
  assert.ok(entry, "the reaction taken back was added by the workload");
  entry.removed = true;
}

/** The mixed workload: messages in three conversations, reactions added and taken back, stories posted and viewed. */
async function runWorkload(w: Workload): Promise<void> {
  const [g1, g2, direct] = w.conversations.map((c) => c.id) as [string, string, string];
  const [u0, u1, u2, u3, u4, u5] = w.users as [string, string, string, string, string, string];
  const plan: [string, string, number][] = [
    [g1, u0, 4], [g1, u1, 3], [g1, u2, 2], [g1, u3, 1],
    [g2, u1, 2], [g2, u5, 3],
    [direct, u2, 2], [direct, u3, 2],
  ];
  // Every sender sends in parallel with the others, each sender's own messages one after another.
  const sent = new Map<string, bigint[]>();
  await Promise.all(
    plan.map(async ([conversation, sender, n]) => {
      for (let k = 0; k < n; k++) {
        const m = await send(w, conversation, sender, k);
        sent.set(conversation, [...(sent.get(conversation) ?? []), m.seq]);
      }
    }),
  );
  const seqs = (c: string) => [...sent.get(c)!].sort((a, b) => (a < b ? -1 : 1));
  const [a, b, c, d] = seqs(g1) as [bigint, bigint, bigint, bigint];
  const [e, f] = seqs(g2) as [bigint, bigint];
  const [h] = seqs(direct) as [bigint];

  await Promise.all([
    (async () => {
      for (const [k, s] of [a, b, c, d].entries()) await react(w, g1, s, u1, "👍", k);
    })(),
    (async () => {
      await react(w, g1, a, u2, "❤️", 0);
      await react(w, g1, b, u2, "❤️", 1);
      // A repeated reaction adds nothing.
      const again = await w.clients(u2, 2).messages.addReaction({ conversationId: g1, seq: a, emoji: "❤️" });
      assert.equal(again.added, false, "a repeated reaction is not added twice");
    })(),
    react(w, g1, a, u4, "👍", 0),
    (async () => {
      await react(w, g2, e, u5, "😂", 0);
      await react(w, g2, f, u5, "😂", 1);
    })(),
    react(w, direct, h, u3, "🎉", 1),
  ]);
  // Taken back: they still count as added (the contract's ConversationBucket.reactions).
  await unreact(w, g1, c, u1, "👍", 1);
  await unreact(w, g1, d, u1, "👍", 0);
  await unreact(w, g2, f, u5, "😂", 1);

  // Stories: u0 posts two, u1 one; views by others (repeats and the author's own do not count).
  const post = async (author: string, k: number) => {
    const story = await postStory(w.clients(author, k), StoryPrivacy.PUBLIC, { caption: "analytics" });
    w.ledger.stories.push({ storyId: story.id, authorId: author, at: timestampMs(story.createdAt!) });
    return story;
  };
  const [storyA, storyB, storyC] = [await post(u0, 0), await post(u0, 1), await post(u1, 0)];
  const view = async (viewer: string, storyId: string, k: number, first: boolean) => {
    const res = await w.clients(viewer, k).stories.markStoryViewed({ storyId });
    assert.equal(res.firstView, first, `${viewer} views ${storyId}: first view ${first}`);
  };
  await Promise.all([view(u1, storyA.id, 0, true), view(u2, storyA.id, 1, true), view(u3, storyA.id, 0, true), view(u0, storyC.id, 1, true)]);
  await view(u2, storyB.id, 0, true);
  await view(u2, storyA.id, 1, false);
  await view(u1, storyC.id, 1, false);
  const reacted = await timed(() => w.clients(u2, 0).stories.addStoryReaction({ storyId: storyA.id, emoji: "🔥" }));
  assert.equal(reacted.result.added, true);
  w.ledger.storyReactions.push({ storyId: storyA.id, authorId: u0, at: reacted.at });

  // The views' times, as the authors see them.
  for (const story of [storyA, storyB, storyC]) {
    const res = await w.clients(story.authorId, 0).stories.listStoryViewers({ storyId: story.id, pageSize: 200 });
    for (const v of res.viewers) {
      w.ledger.views.push({ storyId: story.id, authorId: story.authorId, viewerId: v.userId, at: timestampMs(v.viewedAt!) });
    }
  }
  assert.equal(w.ledger.views.length, 5, "five first views by others");
}

/**
 * With a real PostgreSQL: the raw tables hold exactly what the ledger says was done, so the
 * expected figures are the raw tables' counts (reactions taken back are gone from the table,
 * and the ledger keeps them apart).
 */
async function assertLedgerMatchesRawTables(databaseUrl: string, ledger: Ledger): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const messages = await client.query<{ conversation_id: string; sender_id: string; seq: string; at: string }>(
      "select conversation_id, sender_id, seq::text, floor(extract(epoch from created_at) * 1000)::bigint::text as at from messages",
    );
    const key = (c: string, s: string, seq: bigint | string, at: number | string) => `${c}/${s}/${seq}/${at}`;
    assert.deepEqual(
      messages.rows.map((r) => key(r.conversation_id, r.sender_id, r.seq, r.at)).sort(),
      ledger.messages.map((m) => key(m.conversationId, m.senderId, m.seq, m.at)).sort(),
      "messages: the table holds the workload's messages",
    );
    const reactions = await client.query<{ conversation_id: string; seq: string; emoji: string; user_id: string }>(
      "select conversation_id, seq::text, emoji, user_id from message_reactions",
    );
    assert.deepEqual(
      reactions.rows.map((r) => `${r.conversation_id}/${r.seq}/${r.emoji}/${r.user_id}`).sort(),
      ledger.reactions.filter((r) => !r.removed).map((r) => `${r.conversationId}/${r.seq}/${r.emoji}/${r.userId}`).sort(),
      "message_reactions: the reactions not taken back",
    );
    const stories = await client.query<{ id: string; author_id: string; at: string }>(
      "select id, author_id, floor(extract(epoch from created_at) * 1000)::bigint::text as at from stories",
    );
    assert.deepEqual(
      stories.rows.map((r) => `${r.id}/${r.author_id}/${r.at}`).sort(),
      ledger.stories.map((s) => `${s.storyId}/${s.authorId}/${s.at}`).sort(),
      "stories",
    );
    const views = await client.query<{ story_id: string; viewer_id: string; at: string }>(
      "select v.story_id, v.viewer_id, floor(extract(epoch from v.viewed_at) * 1000)::bigint::text as at from story_views v join stories s on s.id = v.story_id where v.viewer_id <> s.author_id",
    );
    assert.deepEqual(
      views.rows.map((r) => `${r.story_id}/${r.viewer_id}/${r.at}`).sort(),
      ledger.views.map((v) => `${v.storyId}/${v.viewerId}/${v.at}`).sort(),
      "story_views",
    );
  } finally {
    await client.end();
  }
}

/** Every figure the service reports that differs from the expected one (empty when all agree). */
async function mismatches(w: Workload): Promise<string[]> {
  const out: string[] = [];
  const op = (k: number) => w.nodes[k % w.nodes.length]!.clientsFor(w.operator, MAIN_PROTOCOLS[k % 2]!, OPERATOR);
  const compare = (what: string, actual: unknown, ...expected: unknown[]) => {
    if (expected.some((e) => isDeepStrictEqual(actual, e))) return;
    out.push(`${what}: got ${JSON.stringify(actual)}, expected ${expected.map((e) => JSON.stringify(e)).join(" or ")}`);
  };
  const eachTiming = <T>(f: (timing: StoryTiming) => T): T[] => {
    const all = STORY_TIMINGS.map(f);
    return all.filter((x, i) => all.findIndex((y) => isDeepStrictEqual(x, y)) === i);
  };
  for (const [gi, g] of GRANULARITIES.entries()) {
    for (const [ci, c] of w.conversations.entries()) {
      const asker = c.admin ? w.clients(c.admin, gi + ci) : op(gi + ci);
      const res = await asker.analytics.getConversationAnalytics({ conversationId: c.id, range: rangeAround(w.startedAt, g.granularity) });
      compare(
        `conversation ${ci} ${g.name}${c.admin ? "" : " (as operator)"}`,
        res.buckets.map((b) => ({ start: timestampMs(b.start!), messages: Number(b.messages), activeMembers: Number(b.activeMembers), reactions: Number(b.reactions) })),
        expectedConversation(w.ledger, c.id, g.size),
      );
    }
    for (const [ai, author] of w.users.slice(0, 2).entries()) {
      const expected = eachTiming((timing) => expectedStories(w.ledger, author, g.size, timing));
      const rows = (buckets: StoryBucket[]) =>
        buckets.map((b) => ({ start: timestampMs(b.start!), storiesPosted: Number(b.storiesPosted), views: Number(b.views), reach: Number(b.reach), reactions: Number(b.reactions) }));
      const own = await w.clients(author, gi + ai).analytics.getStoryAnalytics({ authorId: "", range: rangeAround(w.startedAt, g.granularity) });
      compare(`stories of author ${ai} ${g.name} (as the author)`, rows(own.buckets), ...expected);
      const theirs = await op(gi + ai + 1).analytics.getStoryAnalytics({ authorId: author, range: rangeAround(w.startedAt, g.granularity) });
      compare(`stories of author ${ai} ${g.name} (as operator)`, rows(theirs.buckets), ...expected);
    }
    const deployment = await op(gi).analytics.getDeploymentAnalytics({ range: rangeAround(w.startedAt, g.granularity) });
    compare(
      `deployment ${g.name}`,
      deployment.buckets.map((b) => ({
        start: timestampMs(b.start!),
        messages: Number(b.messages),
        activeUsers: Number(b.activeUsers),
        reactions: Number(b.reactions),
        storiesPosted: Number(b.storiesPosted),
        storyViews: Number(b.storyViews),
      })),
      ...eachTiming((timing) => expectedDeployment(w.ledger, g.size, timing)),
    );
  }
  return out;
}

/** Polls until every figure agrees (they lag by a few seconds), else fails listing what differs. */
async function figuresAgree(w: Workload, when: string): Promise<void> {
  const deadline = Date.now() + FIGURES_DEADLINE_MS;
  let last: string[] = [];
  for (;;) {
    last = await mismatches(w);
    if (last.length === 0) return;
    if (Date.now() > deadline) assert.fail(`${when}: figures still differ after ${FIGURES_DEADLINE_MS} ms:\n  ${last.join("\n  ")}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The workload's tests, in order on shared state: the figures after the workload, after
 * RebuildAnalytics, and after more work following the rebuild. Each stage is a test of its own,
 * so a disagreement in one still lets the next ones run and report.
 */
function workloadTests(start: (self: Mocha.Context) => Promise<{ nodes: RemoteServer[]; databaseUrl: string | undefined; stop(): Promise<void> } | undefined>) {
  let env: { nodes: RemoteServer[]; databaseUrl: string | undefined; stop(): Promise<void> } | undefined;
  let w: Workload;
  before(async function () {
    this.timeout(120_000);
    env = await start(this);
    if (!env) return;
    w = await prepareWorkload(env.nodes);
    await runWorkload(w);
    if (env.databaseUrl) await assertLedgerMatchesRawTables(env.databaseUrl, w.ledger);
  });
  after(async function () {
    this.timeout(30_000);
    await env?.stop();
  });

  it("hourly and daily figures equal the raw counts", async function () {
    this.timeout(60_000);
    await figuresAgree(w, "after the workload");
  });

  it("RebuildAnalytics recomputes the same figures, and nothing is counted twice afterwards", async function () {
    this.timeout(60_000);
    const nodes = env!.nodes;
    const rebuilt = await nodes[nodes.length - 1]!.clientsFor(w.operator, "grpc", OPERATOR).analytics.rebuildAnalytics({});
    assert.ok(rebuilt.hourlyRows > 0n, `RebuildAnalytics wrote hourly rows (${rebuilt.hourlyRows})`);
    assert.ok(rebuilt.elapsedMs >= 0n);
    await figuresAgree(w, "after RebuildAnalytics");
    // The consumer carries on after the rebuild: what it had applied must not count again.
    await new Promise((r) => setTimeout(r, 2_000));
    assert.deepEqual(await mismatches(w), [], "the figures stay equal a while after RebuildAnalytics");
  });

  it("goes on counting new work after a rebuild", async function () {
    this.timeout(60_000);
    const g1 = w.conversations[0]!;
    const [u0, , , , u4] = w.users as [string, string, string, string, string];
    // A member who had not sent anything yet, and a new reaction.
    const m = await send(w, g1.id, u4, 1);
    await react(w, g1.id, m.seq, u0, "👀", 1);
    if (env!.databaseUrl) await assertLedgerMatchesRawTables(env!.databaseUrl, w.ledger);
    await figuresAgree(w, "after more work following RebuildAnalytics");
  });
}

describe("analytics", () => {
  describe("on one node", () => {
    workloadTests(async () => {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-analytics-"));
      const server = await startRealtimeServer({ DATA_DIR: dataDir });
      return {
        nodes: [server],
        databaseUrl: server.env.DATABASE_URL,
        async stop() {
          await server.stop();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    });
  });

  describe("across two nodes sharing PostgreSQL and NATS", () => {
    workloadTests(async (self) => {
      if (!multiNodeAvailable()) self.skip();
      // One media directory for both nodes, as a deployment shares its media store.
      const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-analytics-"));
      const cluster = await startCluster(2, { DATA_DIR: dataDir });
      return {
        nodes: cluster.nodes,
        databaseUrl: cluster.databaseUrl,
        async stop() {
          await cluster.stop();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    });
  });

  describe("who may ask, and for what", () => {
    let server: TestServer;
    before(async function () {
      this.timeout(60_000);
      server = await startRealtimeServer();
    });
    after(async function () {
      this.timeout(30_000);
      await server?.stop();
    });

    const now = () => Date.now();
    const validHours = () => ({ from: timestampFromMs(now() - 2 * HOUR_MS), to: timestampFromMs(now() + HOUR_MS), granularity: Granularity.HOUR });

    for (const protocol of MAIN_PROTOCOLS) {
      describe(`over ${protocol}`, () => {
        it("answers a conversation's admins and operators, and is NOT_FOUND to its other members and to non-members", async () => {
          const [admin, member, third, stranger] = (await newUsers(server, 4, "acc")) as [string, string, string, string];
          const group = await createGroup(server.clientsFor(admin, protocol), [member, third], "figures");
          const ask = (user: string, options = {}) =>
            server.clientsFor(user, protocol, options).analytics.getConversationAnalytics({ conversationId: group.id, range: validHours() });

          assert.deepEqual((await ask(admin)).buckets, [], "an admin of a conversation with no messages gets no buckets");
          assert.ok(await ask(uniqueId("operator"), OPERATOR), "an operator who is no member");
          await expectCode(ask(member), Code.NotFound);
          const forStranger = await expectCode(ask(stranger), Code.NotFound);
          // A non-member learns nothing: the same answer as for a conversation that does not exist.
          const forNobody = await expectCode(
            server.clientsFor(stranger, protocol).analytics.getConversationAnalytics({ conversationId: randomUUID(), range: validHours() }),
            Code.NotFound,
          );
          assert.equal(forStranger.rawMessage.replace(group.id, "<id>"), forNobody.rawMessage.replace(/[0-9a-f-]{36}/, "<id>"));
          await expectOneOfCodes(
            server.clientsFor(admin, protocol).analytics.getConversationAnalytics({ conversationId: "not-a-conversation", range: validHours() }),
            [Code.InvalidArgument, Code.NotFound],
          );

          // Made an admin, the member may ask; a removed admin may no longer.
          await server.clientsFor(admin, protocol).conversations.setMemberRole({ conversationId: group.id, userId: member, role: MemberRole.ADMIN });
          assert.deepEqual((await ask(member)).buckets, []);
          await server.clientsFor(admin, protocol).conversations.setMemberRole({ conversationId: group.id, userId: member, role: MemberRole.MEMBER });
          await expectCode(ask(member), Code.NotFound);
        });

        it("gives story figures to their author and to operators only", async () => {
          const [author, other] = (await newUsers(server, 2, "sacc")) as [string, string];
          const range = validHours();
          assert.deepEqual((await server.clientsFor(author, protocol).analytics.getStoryAnalytics({ authorId: "", range })).buckets, []);
          assert.deepEqual((await server.clientsFor(author, protocol).analytics.getStoryAnalytics({ authorId: author, range })).buckets, []);
          assert.ok(await server.clientsFor(uniqueId("operator"), protocol, OPERATOR).analytics.getStoryAnalytics({ authorId: author, range }));
          await expectOneOfCodes(server.clientsFor(other, protocol).analytics.getStoryAnalytics({ authorId: author, range }), [Code.PermissionDenied, Code.NotFound]);
        });

        it("refuses deployment figures and RebuildAnalytics to anyone but operators, before looking at the request", async () => {
          const [user] = (await newUsers(server, 1, "opacc")) as [string];
          const clients = server.clientsFor(user, protocol);
          await expectCode(clients.analytics.getDeploymentAnalytics({ range: validHours() }), Code.PermissionDenied);
          await expectCode(clients.analytics.getDeploymentAnalytics({}), Code.PermissionDenied);
          await expectCode(clients.analytics.rebuildAnalytics({}), Code.PermissionDenied);
          const op = server.clientsFor(uniqueId("operator"), protocol, OPERATOR);
          assert.ok(await op.analytics.getDeploymentAnalytics({ range: validHours() }));
        });

        it("refuses missing, empty, reversed and too long ranges with INVALID_ARGUMENT", async () => {
          const [admin, ...members] = await newUsers(server, 3, "range");
          const group = await createGroup(server.clientsFor(admin!, protocol), members, "ranges");
          const adminClients = server.clientsFor(admin!, protocol);
          const op = server.clientsFor(uniqueId("operator"), protocol, OPERATOR);
          const t = bucketOf(now(), HOUR_MS);
          type Range = { from?: ReturnType<typeof timestampFromMs>; to?: ReturnType<typeof timestampFromMs>; granularity?: Granularity };
          const calls: [string, (range: Range | undefined) => Promise<unknown>][] = [
            ["GetConversationAnalytics", (range) => adminClients.analytics.getConversationAnalytics({ conversationId: group.id, range })],
            ["GetStoryAnalytics", (range) => adminClients.analytics.getStoryAnalytics({ authorId: "", range })],
            ["GetDeploymentAnalytics", (range) => op.analytics.getDeploymentAnalytics({ range })],
          ];
          const bad: [string, Range | undefined][] = [
            ["no range", undefined],
            ["no from", { to: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["no to", { from: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["from = to", { from: timestampFromMs(t), to: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["from after to", { from: timestampFromMs(t + HOUR_MS), to: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["32 days of hours", { from: timestampFromMs(t - 32 * DAY_MS), to: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["32 days, granularity unset (hours)", { from: timestampFromMs(t - 32 * DAY_MS), to: timestampFromMs(t) }],
            ["367 days of days", { from: timestampFromMs(t - 367 * DAY_MS), to: timestampFromMs(t), granularity: Granularity.DAY }],
            ["an unknown granularity", { from: timestampFromMs(t - DAY_MS), to: timestampFromMs(t), granularity: 99 as Granularity }],
          ];
          const good: [string, Range][] = [
            ["31 days of hours", { from: timestampFromMs(t - 31 * DAY_MS), to: timestampFromMs(t), granularity: Granularity.HOUR }],
            ["366 days of days", { from: timestampFromMs(t - 366 * DAY_MS), to: timestampFromMs(t), granularity: Granularity.DAY }],
          ];
          for (const [rpc, call] of calls) {
            for (const [what, range] of bad) {
              try {
                await expectCode(call(range), Code.InvalidArgument);
              } catch (err) {
                throw new Error(`${rpc} with ${what}: ${(err as Error).message}`);
              }
            }
            for (const [what, range] of good) {
              try {
                await call(range);
              } catch (err) {
                throw new Error(`${rpc} with ${what} (the longest allowed) failed: ${(err as Error).message}`);
              }
            }
          }
        });
      });
    }
  });
});
