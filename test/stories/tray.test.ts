/**
 * Issue 21, the tray's summary rows: what they could get wrong that the other story tests do not
 * look at. The tray sorts authors by a summary row per (author, tier) and the viewer's view count
 * per (author, tier); these tests change stories, views and the graph and check each entry's
 * stories, latest_story_at and has_unseen at once, against what the stories themselves say.
 */
import assert from "node:assert/strict";
import type { StoryTrayEntry } from "../../gen/parley/v1/story_service_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { newUsers, type Clients } from "../helpers/test-server.ts";
import { clockPast, ms } from "../helpers/fixtures.ts";
import { postStory, sharedStoryServer, sleepUntil, startStoryServer, wholeTray, type StoryServer } from "./support.ts";

const { PUBLIC, FOLLOWERS, CLOSE_FRIENDS } = StoryPrivacy;

/** The viewer's tray entry for the author, or undefined when the author is not in it. */
async function entryOf(viewer: Clients, authorId: string): Promise<StoryTrayEntry | undefined> {
  return (await wholeTray(viewer, false)).flat().find((e) => e.authorId === authorId);
}

/** An entry as [story ids oldest first, latest_story_at ms, has_unseen]. */
function shape(entry: StoryTrayEntry | undefined): [string[], number, boolean] | undefined {
  return entry && [entry.stories.map((s) => s.id), ms(entry.latestStoryAt), entry.hasUnseen];
}

describe("story tray summaries", () => {
  let server: StoryServer;
  before(async () => {
    server = await sharedStoryServer();
  });
  const as = (id: string) => server.clientsFor(id, "grpc");

  it("a deleted story leaves the tray at once; when it was the newest, the older one is the entry's newest again", async () => {
    const [viewer, author] = (await newUsers(server, 2, "trdel")) as [string, string];
    const V = as(viewer);
    const A = as(author);
    await V.social.follow({ userId: author });
    const older = await postStory(A, FOLLOWERS);
    await clockPast(older.createdAt);
    const newer = await postStory(A, FOLLOWERS);
    assert.deepEqual(shape(await entryOf(V, author)), [[older.id, newer.id], ms(newer.createdAt), true]);

    await A.stories.deleteStory({ storyId: newer.id });
    assert.deepEqual(shape(await entryOf(V, author)), [[older.id], ms(older.createdAt), true], "the older story is the newest again");
    await A.stories.deleteStory({ storyId: older.id });
    assert.equal(await entryOf(V, author), undefined, "no story left, no entry");

    const again = await postStory(A, FOLLOWERS);
    assert.deepEqual(shape(await entryOf(V, author)), [[again.id], ms(again.createdAt), true], "a tier emptied and posted to again");
  });

  it("has_unseen follows views and deletions: one unviewed story keeps an entry unseen, whichever it is", async () => {
    const [viewer, author, other] = (await newUsers(server, 3, "trseen")) as [string, string, string];
    const V = as(viewer);
    const A = as(author);
    await V.social.follow({ userId: author });
    const s1 = await postStory(A, FOLLOWERS);
    await clockPast(s1.createdAt);
    const s2 = await postStory(A, PUBLIC);
    await clockPast(s2.createdAt);
    const s3 = await postStory(A, FOLLOWERS);

    await V.stories.markStoryViewed({ storyId: s3.id });
    assert.equal((await entryOf(V, author))?.hasUnseen, true, "the newest viewed, two older ones not");
    await V.stories.markStoryViewed({ storyId: s1.id });
    await V.stories.markStoryViewed({ storyId: s1.id }); // a repeated view counts once
    await as(other).stories.markStoryViewed({ storyId: s2.id }); // someone else's view does not count for the viewer
    assert.equal((await entryOf(V, author))?.hasUnseen, true, "s2 is still unseen");

    await A.stories.deleteStory({ storyId: s2.id });
    assert.deepEqual(shape(await entryOf(V, author)), [[s1.id, s3.id], ms(s3.createdAt), false], "the one unseen story deleted: all seen");

    const s4 = await postStory(A, FOLLOWERS);
    assert.equal((await entryOf(V, author))?.hasUnseen, true, "a new story is unseen");
    await A.stories.deleteStory({ storyId: s1.id }); // a viewed one goes: its view must stop counting
    assert.deepEqual(shape(await entryOf(V, author)), [[s3.id, s4.id], ms(s4.createdAt), true], "s4 is still unseen after a viewed story went");
    await V.stories.markStoryViewed({ storyId: s4.id });
    assert.equal((await entryOf(V, author))?.hasUnseen, false);
    await A.stories.deleteStory({ storyId: s3.id });
    await A.stories.deleteStory({ storyId: s4.id });
    await postStory(A, FOLLOWERS);
    assert.equal((await entryOf(V, author))?.hasUnseen, true, "views of deleted stories never make a new one look seen");
  });

  it("two tiers of one author: the tray shows the tiers the viewer may see now, with their newest story and views each", async () => {
    const [viewer, author] = (await newUsers(server, 2, "trtier")) as [string, string];
    const V = as(viewer);
    const A = as(author);
    await V.social.follow({ userId: author });
    const forFollowers = await postStory(A, FOLLOWERS);
    await clockPast(forFollowers.createdAt);
    const forFriends = await postStory(A, CLOSE_FRIENDS);
    await V.stories.markStoryViewed({ storyId: forFollowers.id });
    assert.deepEqual(shape(await entryOf(V, author)), [[forFollowers.id], ms(forFollowers.createdAt), false], "a follower: the FOLLOWERS tier only, viewed");

    await A.social.addCloseFriend({ userId: viewer });
    assert.deepEqual(shape(await entryOf(V, author)), [[forFollowers.id, forFriends.id], ms(forFriends.createdAt), true], "a close friend at once: both tiers, the newer one unseen");
    await V.stories.markStoryViewed({ storyId: forFriends.id });
    assert.equal((await entryOf(V, author))?.hasUnseen, false);

    await A.social.removeCloseFriend({ userId: viewer });
    assert.deepEqual(shape(await entryOf(V, author)), [[forFollowers.id], ms(forFollowers.createdAt), false], "removed at once: back to the FOLLOWERS tier");
    await V.social.unfollow({ userId: author });
    assert.equal(await entryOf(V, author), undefined, "unfollowed: no entry (the PUBLIC tier is empty)");
  });

  it("a block either way takes the author out of the tray at once, also with include_public", async () => {
    const [viewer, author, blocker] = (await newUsers(server, 3, "trblock")) as [string, string, string];
    const V = as(viewer);
    await V.social.follow({ userId: author });
    await V.social.follow({ userId: blocker });
    await postStory(as(author), PUBLIC);
    await postStory(as(blocker), PUBLIC);
    const inTray = async (includePublic: boolean) => (await wholeTray(V, includePublic)).flat().map((e) => e.authorId).filter((a) => a === author || a === blocker).sort();
    assert.deepEqual(await inTray(false), [author, blocker].sort());

    await as(blocker).social.block({ userId: viewer });
    await V.social.block({ userId: author });
    assert.deepEqual(await inTray(false), [], "blocked by the author, or blocking them");
    assert.deepEqual(await inTray(true), [], "not even as a public story");
  });

  describe("expiry (2-second stories, no cleanup)", () => {
    let expiring: StoryServer;
    before(async function () {
      this.timeout(60_000);
      // Nothing deletes expired stories here: their summary rows stay as they were, and only the clock hides them.
      expiring = await startStoryServer({ STORY_TTL_SECONDS: "2", STORY_SWEEP_INTERVAL_SECONDS: "3600", STORY_EXPIRY_CONSUMER: "off" });
    });
    after(async () => {
      await expiring?.stop();
    });

    it("an expired story leaves the tray at its deadline even though its summary row still counts it", async function () {
      this.timeout(20_000);
      const [viewer, author, single] = (await newUsers(expiring, 3, "trexp")) as [string, string, string];
      const V = expiring.clientsFor(viewer, "grpc");
      const A = expiring.clientsFor(author, "grpc");
      await V.social.follow({ userId: author });
      await V.social.follow({ userId: single });
      const first = await postStory(A, FOLLOWERS);
      const only = await postStory(expiring.clientsFor(single, "grpc"), PUBLIC);
      await sleepUntil(ms(first.createdAt) + 1_000);
      const second = await postStory(A, FOLLOWERS);
      await V.stories.markStoryViewed({ storyId: second.id });
      const entry = async (authorId: string) => shape((await wholeTray(V, false)).flat().find((e) => e.authorId === authorId));
      if (Date.now() < ms(first.expiresAt) - 100) {
        assert.deepEqual(await entry(author), [[first.id, second.id], ms(second.createdAt), true], "before the first deadline");
      }

      await sleepUntil(Math.max(ms(first.expiresAt), ms(only.expiresAt)) + 1);
      assert.deepEqual(await entry(author), [[second.id], ms(second.createdAt), false], "the expired story neither shows nor keeps the entry unseen");
      assert.equal(await entry(single), undefined, "an author whose only story expired has no entry");

      await sleepUntil(ms(second.expiresAt) + 1);
      assert.equal(await entry(author), undefined, "every story expired: no entry");
    });
  });
});
