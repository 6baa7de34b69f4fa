/**
 * Issue 6, "StoryService": posting with a caption limit, the tray (who is in it, in which order,
 * seen flags, public stories only when asked), views counted once per viewer even when they
 * race, the viewers list, reactions, replies as DIRECT messages, and deletion by the author.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { MediaType } from "../../gen/parley/v1/media_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { clockPast, createDirect, listAllForward, ms } from "../helpers/fixtures.ts";
import { EVENT_DEADLINE_MS } from "../helpers/feed.ts";
import { fixture, followersOf, postStory, sharedStoryServer, viewerPages, waitUntilErased, wholeTray, type StoryServer } from "./support.ts";

const { PUBLIC, FOLLOWERS, CLOSE_FRIENDS } = StoryPrivacy;

/** The tray as author ids, only those of `authors` (other tests post public stories too). */
async function trayOrder(c: Clients, authors: readonly string[], includePublic = false): Promise<string[]> {
  return (await wholeTray(c, includePublic)).flat().map((e) => e.authorId).filter((a) => authors.includes(a));
}

function reactionsOf(list: readonly ReactionSummary[]): Array<[string, bigint, boolean]> {
  return list.map((r) => [r.emoji, r.count, r.reactedByMe] as [string, bigint, boolean]).sort((x, y) => (x[0] < y[0] ? -1 : 1));
}

describe("stories", () => {
  let server: StoryServer;
  before(async () => {
    server = await sharedStoryServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      const as = (id: string) => server.clientsFor(id, protocol);

      it("posts a story with its media, caption and tier, alive for 24 hours; a retry returns the same story", async () => {
        const [author] = (await newUsers(server, 1, "post")) as [string];
        const A = as(author);
        const upload = (await A.media.uploadMedia({ data: await fixture("clip.mp4") })).media!;
        const res = await A.stories.createStory({ mediaId: upload.id, caption: "at the beach 🌊", privacy: FOLLOWERS });
        assert.equal(res.created, true);
        const story = res.story!;
        assert.ok(story.id);
        assert.equal(story.authorId, author);
        assert.equal(story.media?.id, upload.id);
        assert.equal(story.media?.type, MediaType.MP4);
        assert.equal(story.caption, "at the beach 🌊");
        assert.equal(story.privacy, FOLLOWERS);
        assert.ok(Math.abs(ms(story.createdAt) - Date.now()) < 60_000, "created about now");
        assert.equal(ms(story.expiresAt) - ms(story.createdAt), 24 * 3600 * 1000, "expires exactly 24 hours later");
        assert.equal(story.seen, true, "the author has always seen their own story");

        const retry = await A.stories.createStory({ mediaId: upload.id, caption: "at the beach 🌊", privacy: FOLLOWERS });
        assert.equal(retry.created, false);
        assert.equal(retry.story?.id, story.id);
        assert.deepEqual((await A.stories.listUserStories({ userId: "" })).stories.map((s) => s.id), [story.id], "one story, listed for its author");
      });

      it("accepts a caption of 500 characters and rejects 501 or a missing tier, posting nothing", async () => {
        const [author] = (await newUsers(server, 1, "caption")) as [string];
        const A = as(author);
        const upload = async () => (await A.media.uploadMedia({ data: await fixture("pixel.jpg") })).media!.id;
        // Two UTF-8 bytes per character: the limit counts characters, not bytes.
        const longest = "é".repeat(500);
        const ok = await A.stories.createStory({ mediaId: await upload(), caption: longest, privacy: PUBLIC });
        assert.equal(ok.story?.caption, longest);
        await expectInvalidArgument(A.stories.createStory({ mediaId: await upload(), caption: `${longest}é`, privacy: PUBLIC }), "caption");
        await expectInvalidArgument(A.stories.createStory({ mediaId: await upload(), caption: "", privacy: StoryPrivacy.UNSPECIFIED }), "privacy");
        assert.equal((await A.stories.listUserStories({ userId: author })).stories.length, 1, "the rejected stories were not posted");
      });

      it("fills the tray with followed authors (and close-friend authors), newest first, unseen first, stories oldest first with seen flags", async () => {
        const [viewer, a1, a2, a3, cfAuthor, stranger] = (await newUsers(server, 6, "tray")) as [string, string, string, string, string, string];
        const V = as(viewer);
        for (const a of [a1, a2, a3]) await V.social.follow({ userId: a });
        await as(cfAuthor).social.addCloseFriend({ userId: viewer });
        await V.social.follow({ userId: cfAuthor }); // followed and a close friend: still one entry
        const mine = await postStory(V, PUBLIC);
        const s1a = await postStory(as(a1), FOLLOWERS);
        await clockPast(s1a.createdAt);
        const s1b = await postStory(as(a1), PUBLIC);
        await clockPast(s1b.createdAt);
        const s2b = await postStory(as(a2), FOLLOWERS);
        await clockPast(s2b.createdAt);
        const sCf = await postStory(as(cfAuthor), CLOSE_FRIENDS);
        await clockPast(sCf.createdAt);
        const s3 = await postStory(as(a3), PUBLIC);
        await clockPast(s3.createdAt);
        // a2's newest story is one the viewer may not see: it must not move a2 up the tray.
        const s2 = await postStory(as(a2), CLOSE_FRIENDS);
        await clockPast(s2.createdAt);
        const sStranger = await postStory(as(stranger), PUBLIC);
        const everyone = [viewer, a1, a2, a3, cfAuthor, stranger];

        assert.deepEqual(await trayOrder(V, everyone), [a3, cfAuthor, a2, a1], "newest story first; strangers and the viewer's own stories are not in it");
        const entries = (await wholeTray(V, false)).flat();
        const e1 = entries.find((e) => e.authorId === a1)!;
        assert.deepEqual(e1.stories.map((s) => s.id), [s1a.id, s1b.id], "an author's stories oldest first");
        assert.equal(ms(e1.latestStoryAt), ms(s1b.createdAt), "latest_story_at is the newest story's time");
        const e2 = entries.find((e) => e.authorId === a2)!;
        assert.deepEqual(e2.stories.map((s) => s.id), [s2b.id], "a CLOSE_FRIENDS story of someone who did not add the viewer is left out");
        assert.equal(ms(e2.latestStoryAt), ms(s2b.createdAt), "latest_story_at counts only stories the viewer may see");
        assert.ok(!entries.some((e) => e.stories.some((s) => s.id === mine.id || s.id === s2.id)));
        assert.ok(entries.every((e) => e.hasUnseen && e.stories.every((s) => !s.seen)), "nothing seen yet");

        await V.stories.markStoryViewed({ storyId: s3.id });
        await V.stories.markStoryViewed({ storyId: s1a.id });
        const after = (await wholeTray(V, false)).flat();
        assert.deepEqual(after.map((e) => e.authorId).filter((a) => everyone.includes(a)), [cfAuthor, a2, a1, a3], "a fully seen author moves behind the unseen ones");
        const a1After = after.find((e) => e.authorId === a1)!;
        assert.equal(a1After.hasUnseen, true, "one of a1's stories is still unseen");
        assert.deepEqual(a1After.stories.map((s) => s.seen), [true, false], "seen flags per story");
        assert.equal(after.find((e) => e.authorId === a3)!.hasUnseen, false);

        const withPublic = await trayOrder(V, everyone, true);
        assert.deepEqual(withPublic, [stranger, cfAuthor, a2, a1, a3], "public stories of others only when asked for, in the same order");
        for (const includePublic of [false, true]) {
          const authors = (await wholeTray(V, includePublic)).flat().map((e) => e.authorId);
          assert.equal(new Set(authors).size, authors.length, `one entry per author (include_public=${includePublic}): ${authors.join(", ")}`);
        }
        const strangerEntry = (await wholeTray(V, true)).flat().find((e) => e.authorId === stranger)!;
        assert.deepEqual(strangerEntry.stories.map((s) => s.id), [sStranger.id]);
      });

      it("pages through the tray by author without repeating or losing one", async () => {
        const [viewer, ...authors] = (await newUsers(server, 6, "tpage")) as string[];
        const V = as(viewer!);
        for (const a of authors) {
          await V.social.follow({ userId: a });
          await postStory(as(a), FOLLOWERS);
        }
        const pages = await wholeTray(V, false, 2);
        assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
        assert.deepEqual(pages.flat().map((e) => e.authorId), [...authors].reverse(), "newest first across pages");
      });

      it("counts each viewer once, also when their views race, and never the author", async () => {
        const [author, ...viewers] = (await newUsers(server, 13, "views")) as string[];
        const A = as(author!);
        const story = await postStory(A, PUBLIC);
        const results = await Promise.all([
          ...viewers.flatMap((v) => [1, 2, 3].map(() => as(v).stories.markStoryViewed({ storyId: story.id }))),
          ...[1, 2, 3].map(() => A.stories.markStoryViewed({ storyId: story.id })),
        ]);
        assert.equal(results.filter((r) => r.firstView).length, viewers.length, "exactly one first view per viewer");
        assert.equal((await A.stories.getStory({ storyId: story.id })).story?.viewCount, BigInt(viewers.length), "the author sees the distinct viewer count");
        const listed = await A.stories.listStoryViewers({ storyId: story.id, pageSize: 200 });
        assert.equal(listed.viewCount, BigInt(viewers.length));
        assert.deepEqual(listed.viewers.map((v) => v.userId).sort(), [...viewers].sort(), "every viewer once, the author not among them");
        const paged = (await viewerPages(A, story.id, 5)).flat().map((v) => v.userId);
        assert.deepEqual(paged, listed.viewers.map((v) => v.userId), "pages of views made at the same moment lose and repeat none");

        const again = await as(viewers[0]!).stories.markStoryViewed({ storyId: story.id });
        assert.equal(again.firstView, false, "viewing again is not a first view");
        const seenByViewer = (await as(viewers[0]!).stories.getStory({ storyId: story.id })).story!;
        assert.equal(seenByViewer.seen, true);
        assert.equal(seenByViewer.viewCount, 0n, "only the author sees the count");
      });

      it("lists viewers newest first, page by page, keeping each at their first view", async () => {
        const [author, ...viewers] = (await newUsers(server, 6, "vlist")) as string[];
        const A = as(author!);
        const story = await postStory(A, PUBLIC);
        for (const v of viewers) {
          await as(v).stories.markStoryViewed({ storyId: story.id });
          await new Promise((r) => setTimeout(r, 5)); // distinct view times
        }
        await as(viewers[0]!).stories.markStoryViewed({ storyId: story.id });
        const viewerList = await viewerPages(A, story.id, 2);
        const times = viewerList.flat().map((v) => ms(v.viewedAt));
        assert.deepEqual(times, [...times].sort((x, y) => y - x), "newest first");
        const pages = viewerList.map((p) => p.map((v) => v.userId));
        assert.equal((await A.stories.listStoryViewers({ storyId: story.id })).viewCount, 5n);
        assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
        assert.deepEqual(pages.flat(), [...viewers].reverse(), "the repeated view did not move the first viewer up");
      });

      it("takes story reactions like message reactions: once per user and emoji, counted, removable", async () => {
        const [author, fan, other] = (await newUsers(server, 3, "sreact")) as [string, string, string];
        const story = await postStory(as(author), PUBLIC);
        const F = as(fan);
        const first = await F.stories.addStoryReaction({ storyId: story.id, emoji: "👍" });
        assert.equal(first.added, true);
        assert.deepEqual(reactionsOf(first.reactions), [["👍", 1n, true]]);
        assert.equal((await F.stories.addStoryReaction({ storyId: story.id, emoji: "👍" })).added, false, "counted once");
        await as(other).stories.addStoryReaction({ storyId: story.id, emoji: "👍" });
        await as(other).stories.addStoryReaction({ storyId: story.id, emoji: "❤️" });
        const seenByAuthor = (await as(author).stories.getStory({ storyId: story.id })).story!;
        assert.deepEqual(reactionsOf(seenByAuthor.reactions), [["❤️", 1n, false], ["👍", 2n, false]]);
        assert.equal(seenByAuthor.reactions[0]?.emoji, "👍", "most used first");
        const removed = await F.stories.removeStoryReaction({ storyId: story.id, emoji: "👍" });
        assert.equal(removed.removed, true);
        assert.deepEqual(reactionsOf(removed.reactions), [["❤️", 1n, false], ["👍", 1n, false]]);
        assert.equal((await F.stories.removeStoryReaction({ storyId: story.id, emoji: "👍" })).removed, false, "removing twice does nothing");
        await expectInvalidArgument(F.stories.addStoryReaction({ storyId: story.id, emoji: "" }), "emoji");
        await expectInvalidArgument(F.stories.addStoryReaction({ storyId: story.id, emoji: "not an emoji" }), "emoji");
      });

      it("posts one story when the same CreateStory races, and counts racing reactions and follows once each", async () => {
        const [author, ...fans] = (await newUsers(server, 9, "race")) as string[];
        const A = as(author!);
        const mediaId = (await A.media.uploadMedia({ data: await fixture("pixel.webp") })).media!.id;
        const posts = await Promise.all([1, 2, 3, 4, 5].map(() => A.stories.createStory({ mediaId, caption: "once", privacy: PUBLIC })));
        assert.equal(posts.filter((p) => p.created).length, 1, "exactly one call created the story");
        assert.equal(new Set(posts.map((p) => p.story?.id)).size, 1, "every call returns the same story");
        assert.equal((await A.stories.listUserStories({ userId: author! })).stories.length, 1);
        const storyId = posts[0]!.story!.id;

        const follows = await Promise.all(fans.flatMap((f) => [1, 2].map(() => as(f).social.follow({ userId: author! }))));
        assert.equal(follows.filter((f) => f.followed).length, fans.length, "one follow per fan");
        const reactions = await Promise.all(fans.flatMap((f) => [1, 2].map(() => as(f).stories.addStoryReaction({ storyId, emoji: "👏" }))));
        assert.equal(reactions.filter((r) => r.added).length, fans.length, "one reaction per fan");
        const story = (await A.stories.getStory({ storyId })).story!;
        assert.deepEqual(reactionsOf(story.reactions), [["👏", BigInt(fans.length), false]]);
        const all = (await followersOf(A, author!, 3)).flat();
        assert.deepEqual(all.sort(), [...fans].sort(), "paging follows made at the same moment loses and repeats none");
      });

      it("answers malformed or unknown ids and bad page requests with INVALID_ARGUMENT or NOT_FOUND, never an internal error", async () => {
        const [me] = (await newUsers(server, 1, "badid")) as [string];
        const M = as(me);
        const unknown = "7d3c1a9e-5b0f-4c8e-9a61-2f4b8c0d1e23";
        for (const storyId of ["not a story id!", "", unknown]) {
          const calls: Array<[string, () => Promise<unknown>]> = [
            ["GetStory", () => M.stories.getStory({ storyId })],
            ["DeleteStory", () => M.stories.deleteStory({ storyId })],
            ["MarkStoryViewed", () => M.stories.markStoryViewed({ storyId })],
            ["ListStoryViewers", () => M.stories.listStoryViewers({ storyId })],
            ["AddStoryReaction", () => M.stories.addStoryReaction({ storyId, emoji: "👍" })],
            ["ReplyToStory", () => M.stories.replyToStory({ storyId, clientMessageId: randomUUID(), content: { case: "text", value: "?" } })],
          ];
          for (const [name, call] of calls) {
            const err = await call().then(
              () => assert.fail(`${name}(${JSON.stringify(storyId)}) succeeded`),
              (e: unknown) => ConnectError.from(e),
            );
            const expected = storyId === unknown ? [Code.NotFound] : [Code.InvalidArgument, Code.NotFound];
            assert.ok(expected.includes(err.code), `${name}(${JSON.stringify(storyId)}): got ${Code[err.code]}: ${err.rawMessage}`);
          }
        }
        for (const mediaId of ["../../etc/passwd", "not a media id!", ""]) {
          for (const call of [() => M.media.getMedia({ mediaId }), () => M.media.downloadMedia({ mediaId }), () => M.stories.createStory({ mediaId, privacy: PUBLIC })]) {
            const err = await call().then(() => assert.fail(`succeeded for media id ${JSON.stringify(mediaId)}`), (e: unknown) => ConnectError.from(e));
            assert.ok([Code.InvalidArgument, Code.NotFound].includes(err.code), `media id ${JSON.stringify(mediaId)}: got ${Code[err.code]}: ${err.rawMessage}`);
          }
        }
        await expectInvalidArgument(M.stories.listStoryFeed({ pageToken: "not-a-token" }), "page_token");
        await expectInvalidArgument(M.stories.listStoryFeed({ pageSize: 101 }), "page_size");
        await expectInvalidArgument(M.stories.listStoryFeed({ pageSize: -1 }), "page_size");
        const story = await postStory(M, PUBLIC);
        await expectInvalidArgument(M.stories.listStoryViewers({ storyId: story.id, pageToken: "not-a-token" }), "page_token");
      });

      it("a story deleted while others view, react and download: each call succeeds or is NOT_FOUND, and nothing is left", async () => {
        const [author, ...fans] = (await newUsers(server, 6, "delrace")) as string[];
        const A = as(author!);
        for (let round = 0; round < 4; round++) {
          const story = await postStory(A, PUBLIC);
          const storyId = story.id;
          const mediaId = story.media!.id;
          const calls: Array<[string, () => Promise<unknown>]> = fans.flatMap((f, i) => [
            ["MarkStoryViewed", () => as(f).stories.markStoryViewed({ storyId })],
            ["AddStoryReaction", () => as(f).stories.addStoryReaction({ storyId, emoji: i % 2 ? "🔥" : "👀" })],
            ["DownloadMedia", () => as(f).media.downloadMedia({ mediaId })],
            ["GetStory", () => as(f).stories.getStory({ storyId })],
          ] as Array<[string, () => Promise<unknown>]>);
          const half = Math.floor(calls.length / 2);
          calls.splice(half, 0, ["DeleteStory", () => A.stories.deleteStory({ storyId })]);
          const outcomes = await Promise.allSettled(calls.map(([, call]) => call()));
          const unexpected = outcomes
            .map((o, i) => ({ name: calls[i]![0], error: o.status === "rejected" ? ConnectError.from(o.reason) : null }))
            .filter(({ error }) => error !== null && error.code !== Code.NotFound)
            .map(({ name, error }) => `${name}: ${Code[error!.code]}: ${error!.rawMessage}`);
          assert.deepEqual(unexpected, [], `round ${round}: calls racing the delete failed otherwise than NOT_FOUND`);
          await expectCode(A.stories.getStory({ storyId }), Code.NotFound);
          await waitUntilErased(server, server.dataDir, story, `DeleteStory (round ${round})`, EVENT_DEADLINE_MS);
        }
      });

      it("sends a reply as a DIRECT message to the author that references the story; a retry sends nothing new", async () => {
        const [author, fan] = (await newUsers(server, 2, "sreply")) as [string, string];
        const story = await postStory(as(author), PUBLIC);
        const F = as(fan);
        const clientMessageId = randomUUID();
        const reply = (await F.stories.replyToStory({ storyId: story.id, clientMessageId, content: { case: "text", value: "love it" } })).message!;
        assert.equal(reply.senderId, fan);
        assert.deepEqual([reply.story?.storyId, reply.story?.authorId], [story.id, author]);
        const direct = await createDirect(as(author), fan);
        assert.equal(reply.conversationId, direct.id, "in the DIRECT conversation of the two");
        const history = await listAllForward(as(author), direct.id);
        assert.deepEqual(history.map((m) => [m.senderId, m.content.value, m.story?.storyId]), [[fan, "love it", story.id]], "the author reads the reply with its story");

        const retry = (await F.stories.replyToStory({ storyId: story.id, clientMessageId, content: { case: "text", value: "love it" } })).message!;
        assert.equal(retry.id, reply.id, "a retry returns the first reply");
        const second = (await F.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "again" } })).message!;
        assert.equal(second.conversationId, direct.id, "the same conversation is reused");
        assert.equal(second.seq, reply.seq + 1n);

        await expectInvalidArgument(F.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "" } }), "text", "content");
        await expectInvalidArgument(F.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID() }), "content", "text", "envelope");
        await expectInvalidArgument(F.stories.replyToStory({ storyId: story.id, clientMessageId: "", content: { case: "text", value: "x" } }), "client_message_id");
        assert.equal((await listAllForward(F, direct.id)).length, 2, "the rejected replies stored nothing");
      });

      it("lets only the author delete a story, which takes its views, reactions and media with it", async () => {
        const [author, fan, stranger] = (await newUsers(server, 3, "sdel")) as [string, string, string];
        const A = as(author);
        const F = as(fan);
        await F.social.follow({ userId: author });
        const story = await postStory(A, FOLLOWERS);
        await F.stories.markStoryViewed({ storyId: story.id });
        await F.stories.addStoryReaction({ storyId: story.id, emoji: "🎉" });
        await expectCode(F.stories.deleteStory({ storyId: story.id }), Code.PermissionDenied);
        await expectCode(as(stranger).stories.deleteStory({ storyId: story.id }), Code.NotFound);
        assert.equal((await F.stories.getStory({ storyId: story.id })).story?.id, story.id, "still there after the refused deletes");

        await A.stories.deleteStory({ storyId: story.id });
        await expectCode(A.stories.getStory({ storyId: story.id }), Code.NotFound);
        await expectCode(F.stories.getStory({ storyId: story.id }), Code.NotFound);
        await expectCode(A.media.downloadMedia({ mediaId: story.media!.id }), Code.NotFound);
        assert.deepEqual((await A.stories.listUserStories({ userId: author })).stories, []);
        try {
          await A.stories.deleteStory({ storyId: story.id });
        } catch (err) {
          // Deleting again may succeed (idempotent) or be NOT_FOUND (the story is gone).
          assert.equal(ConnectError.from(err).code, Code.NotFound, `deleting again: ${String(err)}`);
        }
        await waitUntilErased(server, server.dataDir, story, "DeleteStory", EVENT_DEADLINE_MS);
      });
    });
  }
});
