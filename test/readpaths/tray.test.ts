/**
 * Issue 21, the story tray: whatever structure ListStoryFeed sorts by (a summary per author and
 * privacy tier), what a viewer sees must follow every change at once — on the very next call:
 * expiry (to the second, with or without the expiry consumer), deletes, blocks, unfollows,
 * close-friend removals, views and new posts; and paging must keep the order (unseen first,
 * then newest story) without showing an author twice.
 */
import assert from "node:assert/strict";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { StoryTrayEntry } from "../../gen/parley/v1/story_service_pb.ts";
import { clockPast, ms } from "../helpers/fixtures.ts";
import { newUsers, type Clients, type Protocol } from "../helpers/test-server.ts";
import { postStory, sharedStoryServer, sleepUntil, startStoryServer, wholeTray, type StoryServer } from "../stories/support.ts";
import { duplicatesOf } from "./support.ts";

const { PUBLIC, FOLLOWERS, CLOSE_FRIENDS } = StoryPrivacy;

/** The tray entries of these authors only (the shared server holds other tests' stories), in tray order. */
async function trayOf(c: Clients, authors: readonly string[], includePublic = false, pageSize = 100): Promise<StoryTrayEntry[]> {
  const pages = await wholeTray(c, includePublic, pageSize);
  for (const page of pages) assert.ok(page.length <= pageSize, `a tray page holds at most page_size ${pageSize} entries, got ${page.length}`);
  const all = pages.flat();
  const dup = duplicatesOf(all.map((e) => e.authorId));
  assert.deepEqual(dup, [], `no author twice in the tray (page_size ${pageSize})`);
  return all.filter((e) => authors.includes(e.authorId));
}

/** The entry of one author, or undefined when they are not in the tray. */
async function entryOf(c: Clients, author: string, includePublic = false): Promise<StoryTrayEntry | undefined> {
  return (await trayOf(c, [author], includePublic))[0];
}

const idsOf = (entry: StoryTrayEntry | undefined) => entry?.stories.map((s) => s.id);

/** Posts the stories one after another, each at a strictly later time. */
async function postInTurn(...posts: [Clients, StoryPrivacy][]): Promise<Story[]> {
  const stories: Story[] = [];
  for (const [author, privacy] of posts) {
    if (stories.length) await clockPast(stories.at(-1)!.createdAt);
    stories.push(await postStory(author, privacy));
  }
  return stories;
}

describe("ListStoryFeed: the tray follows every change at once (issue 21)", () => {
  let server: StoryServer;
  before(async function () {
    this.timeout(30_000);
    server = await sharedStoryServer();
  });

  // Each test runs over one protocol, half over each: the tray's answers are the same either
  // way (the inbox tests compare protocols), and this keeps the suite fast.
  let protocol: Protocol = "grpc";
  const as = (id: string) => server.clientsFor(id, protocol);
  let next = 0;
  beforeEach(() => {
    protocol = next++ % 2 ? "connect" : "grpc";
  });

  it("drops a deleted story at once, and an author whose only story it was", async () => {
    const [viewer, x, y] = (await newUsers(server, 3, "trdel")) as [string, string, string];
    const V = as(viewer);
    for (const a of [x, y]) await V.social.follow({ userId: a });
    const [only, older, newer] = await postInTurn([as(y), FOLLOWERS], [as(x), PUBLIC], [as(x), FOLLOWERS]);
    assert.deepEqual((await trayOf(V, [x, y])).map((e) => e.authorId), [x, y]);

    await as(y).stories.deleteStory({ storyId: only!.id });
    assert.deepEqual((await trayOf(V, [x, y], true)).map((e) => e.authorId), [x], "the author of a deleted only story leaves the tray");

    await as(x).stories.deleteStory({ storyId: newer!.id });
    const e = await entryOf(V, x);
    assert.deepEqual(idsOf(e), [older!.id], "the deleted newer story is gone from the entry");
    assert.equal(ms(e?.latestStoryAt), ms(older!.createdAt), "the older story is the entry's newest again");
  });

  it("orders by the newest story left after a delete", async () => {
    const [viewer, x, y] = (await newUsers(server, 3, "trord")) as [string, string, string];
    const V = as(viewer);
    for (const a of [x, y]) await V.social.follow({ userId: a });
    const [xOld, yMid, xNew] = await postInTurn([as(x), FOLLOWERS], [as(y), FOLLOWERS], [as(x), PUBLIC]);
    assert.deepEqual((await trayOf(V, [x, y])).map((e) => e.authorId), [x, y], "x's newer story puts x first");
    await as(x).stories.deleteStory({ storyId: xNew!.id });
    const tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => e.authorId), [y, x], "without it, y's story is the newer one");
    assert.deepEqual(tray.map((e) => ms(e.latestStoryAt)), [ms(yMid!.createdAt), ms(xOld!.createdAt)]);

    // x's older story seen, then a newer unseen one deleted: x has nothing unseen left.
    await V.stories.markStoryViewed({ storyId: xOld!.id });
    await clockPast(yMid!.createdAt);
    const xUnseen = await postStory(as(x), FOLLOWERS);
    assert.deepEqual((await trayOf(V, [x, y])).map((e) => [e.authorId, e.hasUnseen]), [[x, true], [y, true]]);
    await as(x).stories.deleteStory({ storyId: xUnseen.id });
    assert.deepEqual((await trayOf(V, [x, y])).map((e) => [e.authorId, e.hasUnseen]), [[y, true], [x, false]], "deleting x's only unseen story turns its flag off");
  });

  it("drops an author who blocks the viewer, or whom the viewer blocks, at once, with or without public stories", async () => {
    const [viewer, x, y] = (await newUsers(server, 3, "trblk")) as [string, string, string];
    const V = as(viewer);
    for (const a of [x, y]) await V.social.follow({ userId: a });
    await postInTurn([as(x), PUBLIC], [as(y), PUBLIC], [as(x), FOLLOWERS]);
    assert.deepEqual((await trayOf(V, [x, y], true)).map((e) => e.authorId), [x, y]);

    await as(x).social.block({ userId: viewer });
    for (const includePublic of [false, true]) {
      assert.deepEqual((await trayOf(V, [x, y], includePublic)).map((e) => e.authorId), [y], `the author who blocked the viewer is gone (include_public=${includePublic})`);
    }
    await V.social.block({ userId: y });
    for (const includePublic of [false, true]) {
      assert.deepEqual((await trayOf(V, [x, y], includePublic)).map((e) => e.authorId), [], `the author the viewer blocked is gone (include_public=${includePublic})`);
    }
    // The block removed the follows: after unblocking only the public story shows, and only when asked for.
    await as(x).social.unblock({ userId: viewer });
    assert.equal(await entryOf(V, x), undefined, "not followed any more");
    const back = await entryOf(V, x, true);
    assert.equal(back?.stories.length, 1, "only the PUBLIC story comes back");
    assert.equal(back?.stories[0]?.privacy, PUBLIC);
  });

  it("drops the close-friends tier on removal and the followers tier on unfollow, at once, and reorders by what is left", async () => {
    const [viewer, x, y] = (await newUsers(server, 3, "trtier")) as [string, string, string];
    const V = as(viewer);
    const X = as(x);
    for (const a of [x, y]) await V.social.follow({ userId: a });
    await X.social.addCloseFriend({ userId: viewer });
    const [pub, fol, yStory, cf] = await postInTurn([X, PUBLIC], [X, FOLLOWERS], [as(y), FOLLOWERS], [X, CLOSE_FRIENDS]);
    let tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => e.authorId), [x, y], "x's close-friends story is the newest");
    assert.deepEqual(idsOf(tray[0]), [pub!.id, fol!.id, cf!.id]);

    await X.social.removeCloseFriend({ userId: viewer });
    tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => e.authorId), [y, x], "without the close-friends story, y's is newer");
    assert.deepEqual(idsOf(tray[1]), [pub!.id, fol!.id], "the close-friends story is gone");
    assert.equal(ms(tray[1]!.latestStoryAt), ms(fol!.createdAt), "latest_story_at is the newest story the viewer may still see");
    assert.equal(ms(tray[0]!.latestStoryAt), ms(yStory!.createdAt));

    await V.social.unfollow({ userId: x });
    assert.equal(await entryOf(V, x), undefined, "an unfollowed author leaves the tray");
    const publicOnly = await entryOf(V, x, true);
    assert.deepEqual(idsOf(publicOnly), [pub!.id], "with include_public only the PUBLIC story is left");
    assert.equal(ms(publicOnly?.latestStoryAt), ms(pub!.createdAt));

    // A close friend who does not follow sees every tier again (tiers nest).
    await X.social.addCloseFriend({ userId: viewer });
    assert.deepEqual(idsOf(await entryOf(V, x)), [pub!.id, fol!.id, cf!.id], "re-added as a close friend: every tier at once");
  });

  it("turns an entry's unseen flag off once every story is viewed, and on again with a new story", async () => {
    const [viewer, other, x, y] = (await newUsers(server, 4, "trseen")) as [string, string, string, string];
    const V = as(viewer);
    for (const a of [x, y]) {
      await V.social.follow({ userId: a });
      await as(other).social.follow({ userId: a });
    }
    const [x1, x2, y1] = await postInTurn([as(x), FOLLOWERS], [as(x), PUBLIC], [as(y), FOLLOWERS]);
    // Someone else's views change nothing for the viewer.
    for (const s of [x1!, x2!, y1!]) await as(other).stories.markStoryViewed({ storyId: s.id });
    let tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[y, true], [x, true]]);

    await V.stories.markStoryViewed({ storyId: x1!.id });
    tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[y, true], [x, true]], "one of x's stories is still unseen");
    assert.deepEqual(tray[1]!.stories.map((s) => s.seen), [true, false]);

    // Viewing the older entry's last story: it moves behind, even though y's story is newer.
    await V.stories.markStoryViewed({ storyId: x2!.id });
    await V.stories.markStoryViewed({ storyId: y1!.id });
    tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[y, false], [x, false]], "all seen: newest first");
    assert.ok(tray.every((e) => e.stories.every((s) => s.seen)));

    const x3 = await postStory(as(x), CLOSE_FRIENDS); // not for the viewer: changes nothing
    tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[y, false], [x, false]], "a story the viewer may not see does not make the entry unseen");
    assert.ok(!tray[1]!.stories.some((s) => s.id === x3.id));

    await clockPast(x3.createdAt);
    const x4 = await postStory(as(x), FOLLOWERS);
    tray = await trayOf(V, [x, y]);
    assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[x, true], [y, false]], "a new story turns the flag on and puts x first");
    assert.deepEqual(tray[0]!.stories.map((s) => [s.id, s.seen]), [[x1!.id, true], [x2!.id, true], [x4.id, false]]);
    assert.equal(ms(tray[0]!.latestStoryAt), ms(x4.createdAt));
  });

  it("pages through the tray in order, unseen first then newest, each author once, at every page size", async () => {
    const [viewer, ...authors] = (await newUsers(server, 10, "trpage")) as string[];
    const V = as(viewer!);
    for (const a of authors) await V.social.follow({ userId: a });
    // Each author posts once, some twice (an old and a new story); times strictly increase.
    const posts: [Clients, StoryPrivacy][] = authors.map((a, i) => [as(a), i % 2 ? PUBLIC : FOLLOWERS]);
    posts.push([as(authors[1]!), FOLLOWERS], [as(authors[4]!), PUBLIC]);
    const stories = await postInTurn(...posts);
    const latest = new Map<string, number>();
    for (const s of stories) latest.set(s.authorId, ms(s.createdAt));
    // The viewer has seen every story of four authors, among them one with two stories.
    const seenAuthors = new Set([authors[0]!, authors[4]!, authors[6]!, authors[8]!]);
    for (const s of stories) if (seenAuthors.has(s.authorId)) await V.stories.markStoryViewed({ storyId: s.id });
    const byNewest = (a: string, b: string) => latest.get(b)! - latest.get(a)!;
    const expected = [...authors.filter((a) => !seenAuthors.has(a)).sort(byNewest), ...authors.filter((a) => seenAuthors.has(a)).sort(byNewest)];
    for (const pageSize of [1, 2, 4, 100]) {
      const tray = await trayOf(V, authors, false, pageSize);
      assert.deepEqual(tray.map((e) => e.authorId), expected, `tray order with page_size ${pageSize}`);
      assert.deepEqual(tray.map((e) => e.hasUnseen), expected.map((a) => !seenAuthors.has(a)));
      assert.deepEqual(tray.map((e) => ms(e.latestStoryAt)), expected.map((a) => latest.get(a)));
    }
  });

  describe("expiry (4-second lifetime)", () => {
    const TTL_SECONDS = 4;
    const configs = [
      { name: "with the expiry consumer", env: {} },
      { name: "with neither consumer nor sweep: only the clock of the call", env: { STORY_EXPIRY_CONSUMER: "off", STORY_SWEEP_INTERVAL_SECONDS: "3600" } },
    ];
    const servers: StoryServer[] = [];
    before(async function () {
      this.timeout(30_000);
      servers.push(...(await Promise.all(configs.map((c) => startStoryServer({ STORY_TTL_SECONDS: String(TTL_SECONDS), ...c.env })))));
    });
    after(async function () {
      this.timeout(30_000);
      await Promise.all(servers.map((s) => s.stop()));
    });

    it("drops each story from the tray the moment it expires, keeping the author's later ones, on every path", async function () {
      this.timeout(30_000);
      await Promise.all(
        configs.map(async (config, i) => {
          const s = servers[i]!;
          const as = (id: string) => s.clientsFor(id, i === 0 ? "grpc" : "connect");
          const [viewer, x, y] = (await newUsers(s, 3, "trexp")) as [string, string, string];
          const V = as(viewer);
          for (const a of [x, y]) await V.social.follow({ userId: a });
          // A second between the posts, so each check below runs well before the next deadline.
          const x1 = await postStory(as(x), FOLLOWERS);
          await sleepUntil(ms(x1.createdAt) + 1_000);
          const y1 = await postStory(as(y), PUBLIC);
          await sleepUntil(ms(y1.createdAt) + 1_000);
          const x2 = await postStory(as(x), PUBLIC);
          assert.equal(ms(x2.expiresAt) - ms(x2.createdAt), TTL_SECONDS * 1000);
          // The viewer saw x's newer story only: x is unseen because of the older one.
          await V.stories.markStoryViewed({ storyId: x2.id });
          const what = (s: string) => `${config.name}: ${s}`;
          let tray = await trayOf(V, [x, y], true);
          assert.deepEqual(tray.map((e) => [e.authorId, e.hasUnseen]), [[x, true], [y, true]], what("before any deadline"));

          await sleepUntil(ms(x1.expiresAt) + 1);
          tray = await trayOf(V, [x, y], true);
          const xEntry = tray.find((e) => e.authorId === x);
          assert.deepEqual(idsOf(xEntry), [x2.id], what("the expired story is gone from x's entry at its deadline"));
          assert.equal(xEntry!.hasUnseen, false, what("x's remaining story is seen"));
          assert.equal(ms(xEntry!.latestStoryAt), ms(x2.createdAt), what("x's newest story is still the one left"));
          if (Date.now() < ms(y1.expiresAt)) {
            assert.deepEqual(tray.map((e) => e.authorId), [y, x], what("x's unseen story expired: x has only a seen story, behind y"));
          }

          await sleepUntil(ms(y1.expiresAt) + 1);
          for (const includePublic of [false, true]) {
            tray = await trayOf(V, [x, y], includePublic);
            assert.deepEqual(tray.map((e) => e.authorId), [x], what(`y's only story expired: y is gone at its deadline (include_public=${includePublic})`));
          }
          await sleepUntil(ms(x2.expiresAt) + 1);
          for (const includePublic of [false, true]) {
            assert.deepEqual((await trayOf(V, [x, y], includePublic)).map((e) => e.authorId), [], what(`every story expired: nobody in the tray (include_public=${includePublic})`));
          }
          // And a new story after all that shows at once.
          const x3 = await postStory(as(x), FOLLOWERS);
          assert.deepEqual(idsOf(await entryOf(V, x)), [x3.id], what("a story posted after the others expired"));
        }),
      );
    });
  });
});
