/**
 * What the analytics tests share: a server that can take stories (a media directory of its
 * own), a mixed workload with the figures it must produce, and reading the figures back.
 *
 * Expected figures are exact per bucket where the bucket is known to the client (a message's
 * and a story's created_at come back from the API); reactions to messages are bucketed by the
 * server's time of the add, which the API does not return, so those are compared as totals over
 * the range — and per bucket against the raw tables when the test can open the database.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Granularity } from "../../gen/parley/v1/analytics_service_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { eventually } from "../helpers/feed.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { newUsers, type Clients, type RemoteServer, type TestServer } from "../helpers/test-server.ts";
import { postStory } from "../stories/support.ts";

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;
export type Unit = "hour" | "day";

export function bucketOf(ms: number, unit: Unit): number {
  const size = unit === "hour" ? HOUR_MS : DAY_MS;
  return Math.floor(ms / size) * size;
}

/** A range around now that holds every bucket a test writes (two days either side). */
export function rangeAroundNow(unit: Unit) {
  const now = Date.now();
  return {
    from: timestampFromMs(bucketOf(now, "day") - 2 * DAY_MS),
    to: timestampFromMs(bucketOf(now, "day") + 2 * DAY_MS),
    granularity: unit === "hour" ? Granularity.HOUR : Granularity.DAY,
  };
}

/** A server for analytics tests: real-time (NATS with DATABASE_URL) with a media directory of its own. */
export async function startAnalyticsServer(overrides: Record<string, string | undefined> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-analytics-"));
  const server = await startRealtimeServer({ DATA_DIR: dataDir, ...overrides }).catch(async (err: unknown) => {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    ...server,
    async stop() {
      try {
        await server.stop();
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

export interface ConversationFigures {
  messages: number;
  activeMembers: number;
  reactions: number;
}
export interface StoryFigures {
  storiesPosted: number;
  views: number;
  reach: number;
  reactions: number;
}

/** A conversation's figures per bucket start (ms), as the API answers them. */
export async function conversationFigures(clients: Clients, conversationId: string, unit: Unit): Promise<Map<number, ConversationFigures>> {
  const res = await clients.analytics.getConversationAnalytics({ conversationId, range: rangeAroundNow(unit) });
  return new Map(res.buckets.map((b) => [timestampMs(b.start!), { messages: Number(b.messages), activeMembers: Number(b.activeMembers), reactions: Number(b.reactions) }]));
}

/** An author's story figures per bucket start (ms). */
export async function storyFigures(clients: Clients, authorId: string, unit: Unit): Promise<Map<number, StoryFigures>> {
  const res = await clients.analytics.getStoryAnalytics({ authorId, range: rangeAroundNow(unit) });
  return new Map(
    res.buckets.map((b) => [timestampMs(b.start!), { storiesPosted: Number(b.storiesPosted), views: Number(b.views), reach: Number(b.reach), reactions: Number(b.reactions) }]),
  );
}

/** What a workload must produce: per bucket where the client knows the bucket, totals otherwise. */
export interface Expected {
  conversationId: string;
  admin: string;
  members: string[];
  author: string;
  /** The direct conversation a story reply went to (one message; only operators see it: no admins). */
  directConversationId: string;
  /** The author's two stories. */
  storyIds: [string, string];
  /** Per unit: bucket start → messages and distinct senders. */
  messages: Record<Unit, Map<number, { messages: number; senders: Set<string> }>>;
  /** Reactions present at the end (bucketed by the server's clock). */
  reactionTotal: number;
  stories: Record<Unit, Map<number, { posted: number; views: number; viewers: Set<string>; reactions: number }>>;
}

/**
 * Sends, edits, deletes (one with reactions on it), reactions added and taken back (and one
 * re-added), a reply to a story in a direct conversation, stories posted, viewed (twice by one
 * viewer) and reacted to. `as(i)` picks the clients (and so the node) of each call.
 */
export async function mixedWorkload(server: RemoteServer, as: (userId: string, i: number) => Clients = (u) => server.clientsFor(u)): Promise<Expected> {
  const [admin, b, c, d] = (await newUsers(server, 4, "an")) as [string, string, string, string];
  let call = 0;
  const by = (user: string) => as(user, call++);
  const group = await createGroup(by(admin), [b, c, d], "analytics");
  const expected: Expected = {
    conversationId: group.id,
    admin,
    members: [b, c, d],
    author: admin,
    directConversationId: "",
    storyIds: ["", ""],
    messages: { hour: new Map(), day: new Map() },
    reactionTotal: 0,
    stories: { hour: new Map(), day: new Map() },
  };
  const sent: bigint[] = [];
  for (const [sender, count] of [[admin, 5], [b, 4], [c, 3]] as const) {
    for (let i = 0; i < count; i++) {
      const message = await sendText(by(sender), group.id, `${sender} ${i}`);
      sent.push(message.seq);
      for (const unit of ["hour", "day"] as const) {
        const key = bucketOf(timestampMs(message.createdAt!), unit);
        const entry = expected.messages[unit].get(key) ?? { messages: 0, senders: new Set<string>() };
        entry.messages++;
        entry.senders.add(sender);
        expected.messages[unit].set(key, entry);
      }
    }
  }
  const [m1, m2, m3, m4, m5] = sent as [bigint, bigint, bigint, bigint, bigint];
  const react = (user: string, seq: bigint, emoji: string) => by(user).messages.addReaction({ conversationId: group.id, seq, emoji });
  const unreact = (user: string, seq: bigint, emoji: string) => by(user).messages.removeReaction({ conversationId: group.id, seq, emoji });
  await react(b, m1, "👍");
  await react(c, m1, "👍");
  await react(c, m2, "❤️");
  await react(d, m3, "😂");
  await unreact(c, m1, "👍");
  await react(b, m4, "👍");
  await react(d, m4, "🎉");
  await react(b, m5, "❤️");
  await unreact(b, m5, "❤️");
  await react(b, m5, "❤️");
  expected.reactionTotal = 4; // b👍m1, c❤️m2, d😂m3, b❤️m5 (m4's go with its deletion)
  await by(admin).messages.editMessage({ conversationId: group.id, seq: m2, content: { case: "text", value: "edited" } });
  await by(admin).messages.deleteMessage({ conversationId: group.id, seq: m4 });
  await by(b).messages.deleteMessage({ conversationId: group.id, seq: sent[6]! });

  const s1 = await postStory(by(admin), StoryPrivacy.PUBLIC);
  const s2 = await postStory(by(admin), StoryPrivacy.PUBLIC);
  expected.storyIds = [s1.id, s2.id];
  await by(b).stories.markStoryViewed({ storyId: s1.id });
  await by(c).stories.markStoryViewed({ storyId: s1.id });
  await by(c).stories.markStoryViewed({ storyId: s1.id });
  await by(b).stories.markStoryViewed({ storyId: s2.id });
  await by(b).stories.addStoryReaction({ storyId: s1.id, emoji: "👍" });
  await by(c).stories.addStoryReaction({ storyId: s2.id, emoji: "🔥" });
  await by(c).stories.removeStoryReaction({ storyId: s2.id, emoji: "🔥" });
  for (const [story, viewers, reactions] of [[s1, [b, c], 1], [s2, [b], 0]] as const) {
    for (const unit of ["hour", "day"] as const) {
      const key = bucketOf(timestampMs(story.createdAt!), unit);
      const entry = expected.stories[unit].get(key) ?? { posted: 0, views: 0, viewers: new Set<string>(), reactions: 0 };
      entry.posted++;
      entry.views += viewers.length;
      for (const v of viewers) entry.viewers.add(v);
      entry.reactions += reactions;
      expected.stories[unit].set(key, entry);
    }
  }
  // A reply to a story lands in a direct conversation: counted there, not in the group.
  expected.directConversationId = (await createDirect(by(d), admin)).id;
  await by(d).stories.replyToStory({ storyId: s1.id, clientMessageId: crypto.randomUUID(), content: { case: "text", value: "nice" } });
  return expected;
}

/**
 * Whether the figures the API answers are exactly the expected ones, in both units; with
 * `operator`, the story reply in the direct conversation too (its partition may lag the others).
 */
export async function figuresMatch(clients: Clients, expected: Expected, operator?: Clients): Promise<boolean> {
  if (operator) {
    const direct = await conversationFigures(operator, expected.directConversationId, "day");
    if ([...direct.values()].reduce((n, f) => n + f.messages, 0) !== 1) return false;
  }
  for (const unit of ["hour", "day"] as const) {
    const conv = await conversationFigures(clients, expected.conversationId, unit);
    const want = expected.messages[unit];
    if (conv.size < want.size) return false;
    let reactions = 0;
    for (const [start, figures] of conv) {
      const w = want.get(start);
      reactions += figures.reactions;
      if (!w) {
        if (figures.messages !== 0) return false;
        continue;
      }
      if (figures.messages !== w.messages || figures.activeMembers !== w.senders.size) return false;
    }
    if (reactions !== expected.reactionTotal) return false;
    const stories = await storyFigures(clients, expected.author, unit);
    if (stories.size !== expected.stories[unit].size) return false;
    for (const [start, w] of expected.stories[unit]) {
      const got = stories.get(start);
      if (!got || got.storiesPosted !== w.posted || got.views !== w.views || got.reach !== w.viewers.size || got.reactions !== w.reactions) return false;
    }
  }
  return true;
}

/** Polls until the consumer has caught up with the workload (its figures equal the expected ones). */
export async function waitForFigures(clients: Clients, expected: Expected, operator?: Clients, timeoutMs = 15_000): Promise<void> {
  await eventually(() => figuresMatch(clients, expected, operator), "analytics equal to the workload's counts", timeoutMs);
}

/**
 * The conversation's figures counted straight from the raw tables (PostgreSQL only; null on
 * the embedded database, which only the server can open).
 */
export async function rawConversationFigures(databaseUrl: string | undefined, conversationId: string, unit: Unit): Promise<Map<number, ConversationFigures> | null> {
  if (!databaseUrl) return null;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const result = await client.query<{ bucket: Date; messages: string; active: string; reactions: string }>(
      `select bucket, sum(messages) as messages, sum(active) as active, sum(reactions) as reactions from (
         select date_trunc($2, created_at, 'UTC') as bucket, count(*) as messages, count(distinct sender_id) as active, 0 as reactions
           from messages where conversation_id = $1 group by 1
         union all
         select date_trunc($2, created_at, 'UTC'), 0, 0, count(*) from message_reactions where conversation_id = $1 group by 1
       ) parts group by bucket`,
      [conversationId, unit],
    );
    return new Map(result.rows.map((r) => [r.bucket.getTime(), { messages: Number(r.messages), activeMembers: Number(r.active), reactions: Number(r.reactions) }]));
  } finally {
    await client.end();
  }
}

/**
 * Events in the partitions the workload wrote to whose net effect is nil (a reaction added and
 * taken back, on a message and on a story): a partition's last events reach the consumer
 * once a later one shows the gap, even where nothing republishes lost publishes (embedded mode).
 */
export async function settle(server: RemoteServer, expected: Expected): Promise<void> {
  const member = server.clientsFor(expected.members[0]!);
  const { conversationId } = expected;
  await member.messages.addReaction({ conversationId, seq: 1n, emoji: "🌀" });
  await member.messages.removeReaction({ conversationId, seq: 1n, emoji: "🌀" });
  await member.stories.addStoryReaction({ storyId: expected.storyIds[1], emoji: "🌀" });
  await member.stories.removeStoryReaction({ storyId: expected.storyIds[1], emoji: "🌀" });
}
