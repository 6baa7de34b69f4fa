/**
 * Issue 6, "Events": story_posted reaches those who may see the story (and not the others),
 * story_viewed and story_reacted reach the author, story_expired (here: deleted) reaches the
 * author and those the story was posted to — all on the same Subscribe stream as messages.
 */
import assert from "node:assert/strict";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { assertNoneArrived, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { multiNodeAvailable, startCluster } from "../helpers/realtime.ts";
import { postStory, sharedStoryServer, type StoryServer } from "./support.ts";

const posted = (storyId: string) => (e: Event) => e.kind.case === "storyPosted" && e.kind.value.story?.id === storyId;
const expired = (storyId: string) => (e: Event) => e.kind.case === "storyExpired" && e.kind.value.storyId === storyId;

/** What every story event carries: stored (id, cursor), no conversation, the actor. */
function assertStoryEvent(e: Event, actorId: string): void {
  assert.ok(e.id, "a stored event has an id");
  assert.ok(e.cursor, "a stored event has a cursor");
  assert.equal(e.conversationId, "", "story events belong to no conversation");
  assert.equal(e.actorId, actorId, "actor_id");
}

describe("story events", () => {
  let server: StoryServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedStoryServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(userId: string, protocol: Protocol, label: string): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { label: `${label}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("story_posted reaches the author, followers and close friends the tier admits, never the blocked or strangers of non-public tiers", async () => {
        const [author, follower, friend, stranger, blocked, fence] = (await newUsers(server, 6, "posted")) as string[];
        const as = (id: string) => server.clientsFor(id!, protocol);
        const A = as(author!);
        await as(follower!).social.follow({ userId: author! });
        await A.social.addCloseFriend({ userId: friend! });
        await as(blocked!).social.follow({ userId: author! });
        await A.social.block({ userId: blocked! });
        for (const u of [author, follower, friend, stranger, blocked]) await as(u!).social.follow({ userId: fence! });
        const feed = {
          author: await live(author!, protocol, "author"),
          follower: await live(follower!, protocol, "follower"),
          friend: await live(friend!, protocol, "close friend"),
          stranger: await live(stranger!, protocol, "stranger"),
          blocked: await live(blocked!, protocol, "blocked"),
        };

        const forFollowers = await postStory(A, StoryPrivacy.FOLLOWERS, { caption: "followers" });
        const forFriends = await postStory(A, StoryPrivacy.CLOSE_FRIENDS, { caption: "friends" });
        const forAll = await postStory(A, StoryPrivacy.PUBLIC, { caption: "everyone" });
        const expectations: Array<[Feed, Story[]]> = [
          [feed.author, [forFollowers, forFriends, forAll]],
          [feed.follower, [forFollowers, forAll]],
          [feed.friend, [forFollowers, forFriends, forAll]],
        ];
        for (const [f, stories] of expectations) {
          for (const s of stories) {
            const { event } = await f.waitForEvent(posted(s.id), `story_posted(${s.caption})`);
            assertStoryEvent(event, author!);
            const story = event.kind.case === "storyPosted" ? event.kind.value.story : undefined;
            assert.equal(story?.caption, s.caption, "the event carries the story");
            assert.equal(story?.media?.id, s.media?.id);
          }
        }
        const recipient = (await feed.follower.waitForEvent(posted(forAll.id), "story_posted(everyone)")).event;
        assert.ok(recipient.kind.case === "storyPosted");
        assert.equal(recipient.kind.value.story?.seen, false, "as the recipient sees it: not seen yet");
        assert.equal(recipient.kind.value.story?.viewCount, 0n, "as the recipient sees it: no view count");

        // Everyone follows `fence`: once its story reached a feed, anything of the author's
        // that was going to reach that feed has too.
        const fenceStory = await postStory(as(fence!), StoryPrivacy.FOLLOWERS);
        for (const f of Object.values(feed)) if (f !== feed.author) await f.waitForEvent(posted(fenceStory.id), "the fence story");
        const notFor = (f: Feed, stories: Story[], what: string) =>
          assertNoneArrived(f, (fr) => fr.case === "event" && stories.some((s) => posted(s.id)(fr.value)), what);
        notFor(feed.follower, [forFriends], "a CLOSE_FRIENDS story reached a plain follower");
        notFor(feed.stranger, [forFollowers, forFriends], "a FOLLOWERS or CLOSE_FRIENDS story reached a stranger");
        notFor(feed.blocked, [forFollowers, forFriends, forAll], "a story reached the user its author blocked");
      });

      it("story_viewed reaches the author once per viewer, with the count; story_reacted reaches the author on add and removal", async () => {
        const [author, viewer, other] = (await newUsers(server, 3, "viewed")) as string[];
        const A = server.clientsFor(author!, protocol);
        const V = server.clientsFor(viewer!, protocol);
        const story = await postStory(A, StoryPrivacy.PUBLIC);
        const fa = await live(author!, protocol, "author");
        const fv = await live(viewer!, protocol, "viewer");

        await V.stories.markStoryViewed({ storyId: story.id });
        await V.stories.markStoryViewed({ storyId: story.id });
        await A.stories.markStoryViewed({ storyId: story.id });
        await server.clientsFor(other!, protocol).stories.markStoryViewed({ storyId: story.id });
        const viewed = (viewerId: string) => (e: Event) => e.kind.case === "storyViewed" && e.kind.value.storyId === story.id && e.kind.value.viewerId === viewerId;
        const { event: first } = await fa.waitForEvent(viewed(viewer!), "story_viewed by the viewer");
        assertStoryEvent(first, viewer!);
        assert.equal(first.kind.case === "storyViewed" && first.kind.value.viewCount, 1n);
        const { event: second } = await fa.waitForEvent(viewed(other!), "story_viewed by the other viewer");
        assert.equal(second.kind.case === "storyViewed" && second.kind.value.viewCount, 2n, "count after the second viewer");
        assert.equal(fa.events.filter((e) => e.kind.case === "storyViewed").length, 2, "a repeated view and the author's own view send nothing");

        await V.stories.addStoryReaction({ storyId: story.id, emoji: "😍" });
        await V.stories.removeStoryReaction({ storyId: story.id, emoji: "😍" });
        const reacted = (added: boolean) => (e: Event) =>
          e.kind.case === "storyReacted" && e.kind.value.storyId === story.id && e.kind.value.added === added && e.kind.value.emoji === "😍";
        const { event: add } = await fa.waitForEvent(reacted(true), "story_reacted(added)");
        assertStoryEvent(add, viewer!);
        assert.deepEqual(add.kind.case === "storyReacted" && [add.kind.value.userId, add.kind.value.count], [viewer, 1n]);
        const { event: removal } = await fa.waitForEvent(reacted(false), "story_reacted(removed)");
        assert.deepEqual(removal.kind.case === "storyReacted" && [removal.kind.value.userId, removal.kind.value.count], [viewer, 0n]);

        // The author's events above all followed the viewer's actions; the viewer got none of them.
        assertNoneArrived(fv, (f) => f.case === "event" && (f.value.kind.case === "storyViewed" || f.value.kind.case === "storyReacted"), "the author's story_viewed/story_reacted reached the viewer");
      });

      it("deleting a story sends story_expired (deleted) to the author and those it was posted to, and to no one else", async () => {
        const [author, follower, friend, stranger, blocked, fence] = (await newUsers(server, 6, "deleted")) as string[];
        const A = server.clientsFor(author!, protocol);
        await server.clientsFor(follower!, protocol).social.follow({ userId: author! });
        await A.social.addCloseFriend({ userId: friend! });
        await server.clientsFor(blocked!, protocol).social.follow({ userId: author! });
        await A.social.block({ userId: blocked! });
        for (const u of [stranger, blocked]) await server.clientsFor(u!, protocol).social.follow({ userId: fence! });
        const fa = await live(author!, protocol, "author");
        const ff = await live(follower!, protocol, "follower");
        const fc = await live(friend!, protocol, "close friend");
        const fs = await live(stranger!, protocol, "stranger");
        const fb = await live(blocked!, protocol, "blocked");
        const story = await postStory(A, StoryPrivacy.FOLLOWERS);
        await A.stories.deleteStory({ storyId: story.id });
        for (const f of [fa, ff, fc]) {
          const { event } = await f.waitForEvent(expired(story.id), "story_expired");
          assertStoryEvent(event, author!);
          assert.ok(event.kind.case === "storyExpired");
          assert.equal(event.kind.value.deleted, true);
          assert.equal(event.kind.value.authorId, author);
        }
        const fenceStory = await postStory(server.clientsFor(fence!, protocol), StoryPrivacy.FOLLOWERS);
        for (const f of [fs, fb]) {
          await f.waitForEvent(posted(fenceStory.id), "the fence story");
          assertNoneArrived(f, (fr) => fr.case === "event" && (expired(story.id)(fr.value) || posted(story.id)(fr.value)), "news of a story they could never see");
        }
      });
    });
  }

  it("story_posted and story_viewed cross nodes: author on one, follower on the other", async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-stories-cluster-"));
    const cluster = await startCluster(2, { DATA_DIR: dataDir });
    try {
      const [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
      const [author, follower] = (await newUsers(nodeA, 2, "xnode")) as [string, string];
      await nodeB.clientsFor(follower, "grpc").social.follow({ userId: author });
      const fa = await openLiveFeed(nodeA.clientsFor(author, "grpc"), { label: "author@A" });
      const ff = await openLiveFeed(nodeB.clientsFor(follower, "grpc"), { label: "follower@B" });
      feeds.push(fa, ff);
      const story = await postStory(nodeA.clientsFor(author, "grpc"), StoryPrivacy.FOLLOWERS);
      await ff.waitForEvent(posted(story.id), "story_posted on the other node");
      const seen = await nodeB.clientsFor(follower, "connect").media.downloadMedia({ mediaId: story.media!.id });
      assert.ok(seen.data.length > 0, "the other node serves the media too");
      await nodeB.clientsFor(follower, "grpc").stories.markStoryViewed({ storyId: story.id });
      await fa.waitForEvent((e) => e.kind.case === "storyViewed" && e.kind.value.storyId === story.id, "story_viewed from the other node");
    } finally {
      for (const f of feeds.splice(0)) f.close();
      await cluster.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
