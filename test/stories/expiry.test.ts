/**
 * Issue 6, "Expiry", with a 2-second story lifetime: one second after the deadline no call
 * returns the story or its media, whatever the cleanup did; the expiry consumer deletes the
 * rows and the file within a few seconds and tells the live feeds; and when the consumer was
 * down at the deadline, the sweep of a node started later deletes them.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, createTestDatabase, type Clients } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createDirect, listAllForward, ms } from "../helpers/fixtures.ts";
import { openLiveFeed, type Feed } from "../helpers/feed.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, realtimeEnv } from "../helpers/realtime.ts";
import { mediaFileExists, postStory, sleepUntil, startStoryServer, storyRows, waitUntilErased } from "./support.ts";

const TTL = { STORY_TTL_SECONDS: "2" };
/** Long enough that no sweep runs during a test: whatever is deleted, the consumer deleted. */
const NO_SWEEP = { STORY_SWEEP_INTERVAL_SECONDS: "3600" };
/** How long after the deadline the rows and the file may still exist. */
const CLEANUP_DEADLINE_MS = 5_000;

/** Asserts that no call shows the story to the caller any more. */
async function assertGoneFor(c: Clients, story: Story, isAuthor: boolean, what: string): Promise<void> {
  const storyId = story.id;
  await expectCode(c.stories.getStory({ storyId }), Code.NotFound);
  assert.deepEqual((await c.stories.listUserStories({ userId: story.authorId })).stories.map((s) => s.id), [], `${what}: ListUserStories`);
  const tray = await c.stories.listStoryFeed({ includePublic: true, pageSize: 100 });
  assert.ok(!tray.entries.some((e) => e.stories.some((s) => s.id === storyId)), `${what}: not in the tray`);
  await expectCode(c.stories.markStoryViewed({ storyId }), Code.NotFound);
  await expectCode(c.stories.addStoryReaction({ storyId, emoji: "👍" }), Code.NotFound);
  await expectCode(c.stories.removeStoryReaction({ storyId, emoji: "👍" }), Code.NotFound);
  await expectCode(c.media.getMedia({ mediaId: story.media!.id }), Code.NotFound);
  await expectCode(c.media.downloadMedia({ mediaId: story.media!.id }), Code.NotFound);
  if (isAuthor) {
    await expectCode(c.stories.listStoryViewers({ storyId }), Code.NotFound);
    await expectCode(c.stories.deleteStory({ storyId }), Code.NotFound);
  } else {
    await expectCode(c.stories.replyToStory({ storyId, clientMessageId: randomUUID(), content: { case: "text", value: "late" } }), Code.NotFound);
  }
}

/** Posts a PUBLIC story that a follower viewed and reacted to (so it has rows of every kind). */
async function postWatchedStory(author: Clients, follower: Clients, authorId: string): Promise<Story> {
  await follower.social.follow({ userId: authorId });
  const story = await postStory(author, StoryPrivacy.PUBLIC);
  assert.equal(ms(story.expiresAt) - ms(story.createdAt), 2_000, "expires_at = created_at + STORY_TTL_SECONDS");
  assert.equal((await follower.stories.getStory({ storyId: story.id })).story?.id, story.id, "visible before its deadline");
  await follower.stories.markStoryViewed({ storyId: story.id });
  await follower.stories.addStoryReaction({ storyId: story.id, emoji: "⏳" });
  await follower.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "see you tomorrow" } });
  return story;
}

describe("story expiry (2-second lifetime)", () => {
  it("one second after the deadline no call returns the story or its media, even before any cleanup ran", async function () {
    this.timeout(30_000);
    // No consumer and no sweep: only the clock at read time hides the story.
    const server = await startStoryServer({ ...TTL, ...NO_SWEEP, STORY_EXPIRY_CONSUMER: "off" });
    try {
      const cases = [];
      for (const protocol of MAIN_PROTOCOLS) {
        const [author, follower] = (await newUsers(server, 2, `exp-${protocol}`)) as [string, string];
        const A = server.clientsFor(author, protocol);
        const F = server.clientsFor(follower, protocol);
        cases.push({ protocol, A, F, story: await postWatchedStory(A, F, author) });
      }
      for (const { F, story } of cases) {
        // Still there just before the deadline (unless this very call ended after it).
        await sleepUntil(ms(story.expiresAt) - 700);
        const got = await F.stories.getStory({ storyId: story.id }).catch((err: unknown) => err);
        if (Date.now() < ms(story.expiresAt)) assert.ok(!(got instanceof Error), `hidden before its deadline: ${String(got)}`);
      }
      for (const { A, F, story } of cases) {
        // Gone the very moment the deadline passes, for everyone.
        await sleepUntil(ms(story.expiresAt) + 1);
        await expectCode(F.stories.getStory({ storyId: story.id }), Code.NotFound);
        await expectCode(A.stories.getStory({ storyId: story.id }), Code.NotFound);
      }
      await sleepUntil(Math.max(...cases.map((c) => ms(c.story.expiresAt))) + 1_000);
      for (const { protocol, A, F, story } of cases) {
        await assertGoneFor(A, story, true, `author over ${protocol}`);
        await assertGoneFor(F, story, false, `follower over ${protocol}`);
      }
    } finally {
      await server.stop();
    }
  });

  it("the expiry consumer deletes the story's rows and file within seconds of the deadline and tells the live feeds", async function () {
    this.timeout(30_000);
    const server = await startStoryServer({ ...TTL, ...NO_SWEEP });
    const feeds: Feed[] = [];
    try {
      const [author, follower] = (await newUsers(server, 2, "exp-consumer")) as [string, string];
      const A = server.clientsFor(author, "grpc");
      const F = server.clientsFor(follower, "connect");
      feeds.push(await openLiveFeed(A, { label: "author" }), await openLiveFeed(F, { label: "follower" }));
      const story = await postWatchedStory(A, F, author);
      // Deleted long before its deadline: when the consumer's turn comes, there is nothing to do.
      const deleted = await postStory(A, StoryPrivacy.PUBLIC);
      await A.stories.deleteStory({ storyId: deleted.id });
      assert.ok(await mediaFileExists(server.dataDir, story.media!.id), "the file is stored while the story lives");
      const rows = await storyRows(server, story);
      if (rows) assert.deepEqual(rows, { stories: 1, story_views: 1, story_reactions: 1, story_reaction_counts: 1, media: 1 }, "rows while it lives");

      for (const feed of feeds) {
        const { event } = await feed.waitForEvent(
          (e) => e.kind.case === "storyExpired" && e.kind.value.storyId === story.id,
          "story_expired",
          { timeoutMs: ms(story.expiresAt) + CLEANUP_DEADLINE_MS - Date.now() },
        );
        assert.ok(event.kind.case === "storyExpired");
        assert.equal(event.kind.value.authorId, author);
        assert.equal(event.kind.value.deleted, false, "expired, not deleted");
        assert.ok(Date.now() >= ms(story.expiresAt), "not before the deadline");
      }
      await waitUntilErased(server, server.dataDir, story, "the consumer", ms(story.expiresAt) + CLEANUP_DEADLINE_MS - Date.now());
      await sleepUntil(ms(deleted.expiresAt) + 1_000);
      for (const feed of feeds) {
        const notices = feed.events.filter((e) => e.kind.case === "storyExpired" && e.kind.value.storyId === deleted.id);
        assert.deepEqual(notices.map((e) => e.kind.case === "storyExpired" && e.kind.value.deleted), [true], `${feed.label}: one story_expired (deleted) for the deleted story, none again at its deadline`);
      }
      const direct = await createDirect(F, author);
      const kept = await listAllForward(A, direct.id);
      assert.deepEqual(kept.map((m) => [m.content.value, m.story?.storyId]), [["see you tomorrow", story.id]], "the reply outlives the story, still pointing at it");
    } finally {
      for (const f of feeds) f.close();
      await server.stop();
    }
  });

  /**
   * Posts a watched story on a first node that stops at once (its consumer goes down before the
   * deadline), waits past the deadline, then starts a second node on the same database, data
   * directory and NATS prefix and waits for the story's rows and file to go.
   */
  async function restartScenario(second: Record<string, string>, by: string): Promise<void> {
    // PostgreSQL when configured, else an embedded database kept on disk so that the second
    // node opens what the first one wrote.
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-sweep-"));
    const database = await createTestDatabase();
    const prefix = natsPrefix();
    const shared = { ...TTL, DATA_DIR: dataDir, PGLITE_PATH: database ? undefined : path.join(dataDir, "pglite") };
    const startNode = (extra: Record<string, string>) =>
      startTestServer(realtimeEnv(prefix, { ...shared, ...extra }), database ? { databaseUrl: database.url } : {});
    try {
      const first = await startNode(NO_SWEEP);
      let story: Story;
      try {
        const [author, follower] = (await newUsers(first, 2, "exp-restart")) as [string, string];
        story = await postWatchedStory(first.clientsFor(author, "grpc"), first.clientsFor(follower, "grpc"), author);
      } finally {
        await first.stop();
      }
      await sleepUntil(ms(story.expiresAt) + 1_000);
      assert.ok(await mediaFileExists(dataDir, story.media!.id), "precondition: nobody deleted the file while no node ran");

      const node = await startNode(second);
      try {
        await expectCode(node.clientsFor(story.authorId, "connect").stories.getStory({ storyId: story.id }), Code.NotFound);
        await waitUntilErased(node, dataDir, story, by, CLEANUP_DEADLINE_MS);
      } finally {
        await node.stop();
      }
    } finally {
      await database?.drop();
      await deleteNatsState(prefix).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    }
  }

  it("a story whose consumer was down at the deadline is deleted by the sweep of a node started later", async function () {
    this.timeout(60_000);
    await restartScenario({ STORY_EXPIRY_CONSUMER: "off", STORY_SWEEP_INTERVAL_SECONDS: "1" }, "the sweep");
  });

  it("with JetStream, the expiry consumer of a node started later picks up the overdue story by itself", async function () {
    // The in-process bus forgets everything when its node stops; JetStream keeps the message.
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    await restartScenario(NO_SWEEP, "the expiry consumer of the new node");
  });
});
