/**
 * Issue 6, "Privacy": every story path (get, user list, tray, view, viewers, react, reply, media
 * download) against every tier {PUBLIC, FOLLOWERS, CLOSE_FRIENDS} and every relation of the
 * caller to the author {author, close friend, follower, stranger, blocked}. What the caller may
 * see works; what they may not is NOT_FOUND, never PERMISSION_DENIED (which would confirm the
 * story exists). Changes to the graph apply at once to stories already posted.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type Protocol } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { fixture, postStory, sharedStoryServer, TIERS, wholeTray, type StoryServer } from "./support.ts";

type Relation = "author" | "close friend" | "follower" | "stranger" | "blocked";
const RELATIONS: readonly Relation[] = ["author", "close friend", "follower", "stranger", "blocked"];
type TierName = (typeof TIERS)[number]["name"];

/** Who may see a story of each tier (issue 6, "Privacy"; a block wins over everything). */
const MAY_SEE: Record<TierName, readonly Relation[]> = {
  PUBLIC: ["author", "close friend", "follower", "stranger"],
  FOLLOWERS: ["author", "close friend", "follower"],
  CLOSE_FRIENDS: ["author", "close friend"],
};

interface Cell {
  caller: Clients;
  authorId: string;
  story: Story;
  relation: Relation;
}

/** One RPC of the matrix: what the caller notices when they may see the story, and when not. */
interface Probe {
  name: string;
  /** Relations for which the probe means something (the author does not reply to themself). */
  appliesTo?: (r: Relation) => boolean;
  visible(cell: Cell): Promise<void>;
  hidden(cell: Cell): Promise<void>;
}

/** Every story of the author in the caller's tray (all pages, public stories included). */
async function trayStoryIds(caller: Clients, authorId: string): Promise<string[]> {
  return (await wholeTray(caller, true)).flat().filter((e) => e.authorId === authorId).flatMap((e) => e.stories.map((s) => s.id));
}

/** The author's stories the caller gets from ListUserStories; a caller who may not see the author at all may get NOT_FOUND instead. */
async function userStoryIds(caller: Clients, authorId: string): Promise<string[]> {
  try {
    return (await caller.stories.listUserStories({ userId: authorId })).stories.map((s) => s.id);
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return [];
    throw err;
  }
}

const PROBES: readonly Probe[] = [
  {
    name: "GetStory",
    async visible({ caller, story }) {
      const got = (await caller.stories.getStory({ storyId: story.id })).story;
      assert.equal(got?.id, story.id);
      assert.equal(got?.media?.id, story.media?.id, "with its media");
    },
    hidden: ({ caller, story }) => expectCode(caller.stories.getStory({ storyId: story.id }), Code.NotFound).then(() => undefined),
  },
  {
    name: "ListUserStories",
    async visible({ caller, authorId, story }) {
      assert.ok((await caller.stories.listUserStories({ userId: authorId })).stories.some((s) => s.id === story.id), "listed");
    },
    async hidden({ caller, authorId, story }) {
      assert.ok(!(await userStoryIds(caller, authorId)).includes(story.id), "not listed");
    },
  },
  {
    name: "ListStoryFeed",
    // The tray shows other people's stories; the author's own are in ListUserStories.
    appliesTo: (r) => r !== "author",
    async visible({ caller, authorId, story }) {
      assert.ok((await trayStoryIds(caller, authorId)).includes(story.id), "in the tray");
    },
    async hidden({ caller, authorId, story }) {
      assert.ok(!(await trayStoryIds(caller, authorId)).includes(story.id), "not in the tray");
    },
  },
  {
    name: "MarkStoryViewed",
    async visible({ caller, story }) {
      await caller.stories.markStoryViewed({ storyId: story.id });
    },
    hidden: ({ caller, story }) => expectCode(caller.stories.markStoryViewed({ storyId: story.id }), Code.NotFound).then(() => undefined),
  },
  {
    name: "ListStoryViewers",
    async visible({ caller, story, relation }) {
      const call = caller.stories.listStoryViewers({ storyId: story.id });
      // Author only; someone who can see the story anyway learns nothing from "not yours".
      if (relation === "author") await call;
      else await expectCode(call, Code.PermissionDenied);
    },
    hidden: ({ caller, story }) => expectCode(caller.stories.listStoryViewers({ storyId: story.id }), Code.NotFound).then(() => undefined),
  },
  {
    name: "AddStoryReaction / RemoveStoryReaction",
    async visible({ caller, story }) {
      const added = await caller.stories.addStoryReaction({ storyId: story.id, emoji: "🔥" });
      assert.equal(added.added, true);
      assert.ok(added.reactions.some((r) => r.emoji === "🔥" && r.reactedByMe), "the reaction shows as mine");
      assert.equal((await caller.stories.removeStoryReaction({ storyId: story.id, emoji: "🔥" })).removed, true);
    },
    async hidden({ caller, story }) {
      await expectCode(caller.stories.addStoryReaction({ storyId: story.id, emoji: "🔥" }), Code.NotFound);
      await expectCode(caller.stories.removeStoryReaction({ storyId: story.id, emoji: "🔥" }), Code.NotFound);
    },
  },
  {
    name: "ReplyToStory",
    appliesTo: (r) => r !== "author",
    async visible({ caller, story, authorId }) {
      const msg = (await caller.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "nice" } })).message;
      assert.equal(msg?.story?.storyId, story.id, "the reply references the story");
      assert.equal(msg?.story?.authorId, authorId);
    },
    hidden: ({ caller, story }) =>
      expectCode(
        caller.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "hi" } }),
        Code.NotFound,
      ).then(() => undefined),
  },
  {
    name: "GetMedia / DownloadMedia",
    async visible({ caller, story }) {
      const mediaId = story.media!.id;
      assert.equal((await caller.media.getMedia({ mediaId })).media?.id, mediaId);
      const res = await caller.media.downloadMedia({ mediaId });
      assert.deepEqual(Buffer.from(res.data), Buffer.from(await fixture("pixel.png")), "the uploaded bytes");
    },
    async hidden({ caller, story }) {
      const mediaId = story.media!.id;
      await expectCode(caller.media.getMedia({ mediaId }), Code.NotFound);
      await expectCode(caller.media.downloadMedia({ mediaId }), Code.NotFound);
    },
  },
];

/** The author and one caller of every relation, set up through the public API. */
interface Cast {
  authorId: string;
  clients: Record<Relation, Clients>;
  ids: Record<Relation, string>;
}

async function castOf(server: StoryServer, protocol: Protocol): Promise<Cast> {
  const [author, closeFriend, follower, stranger, blocked] = await newUsers(server, 5, "matrix");
  const ids: Record<Relation, string> = { author: author!, "close friend": closeFriend!, follower: follower!, stranger: stranger!, blocked: blocked! };
  const clients = Object.fromEntries(RELATIONS.map((r) => [r, server.clientsFor(ids[r], protocol)])) as Record<Relation, Clients>;
  await clients.follower.social.follow({ userId: ids.author });
  await clients["close friend"].social.follow({ userId: ids.author });
  await clients.author.social.addCloseFriend({ userId: ids["close friend"] });
  // The blocked user had every tie a user can have; the block must beat all of them.
  await clients.blocked.social.follow({ userId: ids.author });
  await clients.author.social.addCloseFriend({ userId: ids.blocked });
  await clients.author.social.block({ userId: ids.blocked });
  return { authorId: ids.author, clients, ids };
}

describe("story privacy matrix", () => {
  let server: StoryServer;
  before(async () => {
    server = await sharedStoryServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      let cast: Cast;
      const stories = {} as Record<TierName, Story>;
      before(async () => {
        cast = await castOf(server, protocol);
        for (const tier of TIERS) stories[tier.name] = await postStory(cast.clients.author, tier.privacy);
      });

      for (const tier of TIERS) {
        for (const relation of RELATIONS) {
          const allowed = MAY_SEE[tier.name].includes(relation);
          for (const probe of PROBES) {
            if (probe.appliesTo && !probe.appliesTo(relation)) continue;
            it(`${tier.name} story, ${relation}: ${probe.name} ${allowed ? "works" : "is NOT_FOUND"}`, async () => {
              const cell: Cell = { caller: cast.clients[relation], authorId: cast.authorId, story: stories[tier.name], relation };
              await (allowed ? probe.visible(cell) : probe.hidden(cell));
            });
          }
        }
      }
    });
  }

  describe("changes to the graph apply at once to stories already posted", () => {
    const protocol: Protocol = "grpc";
    const get = (c: Clients, s: Story) => c.stories.getStory({ storyId: s.id });
    const download = (c: Clients, s: Story) => c.media.downloadMedia({ mediaId: s.media!.id });

    async function assertSees(c: Clients, authorId: string, s: Story, what: string): Promise<void> {
      assert.equal((await get(c, s)).story?.id, s.id, `${what}: GetStory`);
      assert.ok((await userStoryIds(c, authorId)).includes(s.id), `${what}: ListUserStories`);
      assert.ok((await trayStoryIds(c, authorId)).includes(s.id), `${what}: tray`);
      assert.ok((await download(c, s)).data.length > 0, `${what}: DownloadMedia`);
    }
    async function assertHidden(c: Clients, authorId: string, s: Story, what: string): Promise<void> {
      await expectCode(get(c, s), Code.NotFound);
      assert.ok(!(await userStoryIds(c, authorId)).includes(s.id), `${what}: not in ListUserStories`);
      assert.ok(!(await trayStoryIds(c, authorId)).includes(s.id), `${what}: not in the tray`);
      await expectCode(download(c, s), Code.NotFound);
      await expectCode(c.stories.markStoryViewed({ storyId: s.id }), Code.NotFound);
    }

    it("removing a close friend hides CLOSE_FRIENDS stories from them at once; adding one shows them at once", async () => {
      const [author, friend] = await newUsers(server, 2, "cf-change");
      const A = server.clientsFor(author!, protocol);
      const F = server.clientsFor(friend!, protocol);
      await F.social.follow({ userId: author! });
      const story = await postStory(A, TIERS[2].privacy);
      await assertHidden(F, author!, story, "a follower who is not a close friend");
      await A.social.addCloseFriend({ userId: friend! });
      await assertSees(F, author!, story, "just added to close friends");
      await A.social.removeCloseFriend({ userId: friend! });
      await assertHidden(F, author!, story, "just removed from close friends");
    });

    it("unfollowing hides FOLLOWERS stories at once; PUBLIC ones stay visible", async () => {
      const [author, fan] = await newUsers(server, 2, "unfollow");
      const A = server.clientsFor(author!, protocol);
      const F = server.clientsFor(fan!, protocol);
      await F.social.follow({ userId: author! });
      const forFollowers = await postStory(A, TIERS[1].privacy);
      const forAll = await postStory(A, TIERS[0].privacy);
      await assertSees(F, author!, forFollowers, "a follower");
      assert.equal((await F.social.unfollow({ userId: author! })).unfollowed, true);
      await assertHidden(F, author!, forFollowers, "after unfollowing");
      assert.equal((await get(F, forAll)).story?.id, forAll.id, "the PUBLIC story is still there for them");
      await F.social.follow({ userId: author! });
      await assertSees(F, author!, forFollowers, "following again");
    });

    it("a close friend who does not follow still sees FOLLOWERS stories (tiers nest)", async () => {
      const [author, friend] = await newUsers(server, 2, "nest");
      const A = server.clientsFor(author!, protocol);
      await A.social.addCloseFriend({ userId: friend! });
      const story = await postStory(A, TIERS[1].privacy);
      await assertSees(server.clientsFor(friend!, protocol), author!, story, "a close friend who does not follow");
    });

    it("a block by the viewer hides the author's stories from them and theirs from the author, at once; unblocking restores only PUBLIC", async () => {
      const [author, viewer] = await newUsers(server, 2, "rev-block");
      const A = server.clientsFor(author!, protocol);
      const V = server.clientsFor(viewer!, protocol);
      await V.social.follow({ userId: author! });
      await A.social.follow({ userId: viewer! });
      const publicStory = await postStory(A, TIERS[0].privacy);
      const followersStory = await postStory(A, TIERS[1].privacy);
      const viewersStory = await postStory(V, TIERS[0].privacy);
      await assertSees(V, author!, followersStory, "a follower");
      await assertSees(A, viewer!, viewersStory, "the author looking at the viewer's story");

      await V.social.block({ userId: author! });
      await assertHidden(V, author!, publicStory, "PUBLIC story, after blocking its author");
      await assertHidden(V, author!, followersStory, "FOLLOWERS story, after blocking its author");
      await assertHidden(A, viewer!, viewersStory, "the blocker's story, seen by the one they blocked");

      await V.social.unblock({ userId: author! });
      await assertSees(V, author!, publicStory, "PUBLIC story after unblocking");
      await assertHidden(V, author!, followersStory, "FOLLOWERS story after unblocking (the follow is not restored)");
    });
  });
});
