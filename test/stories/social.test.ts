/**
 * Issue 6, "SocialService": follows with paginated lists, a close-friends list only its owner
 * sees (adding someone does not tell them), and blocks: a block removes follows and close-friend
 * entries both ways, hides stories, and stops DIRECT messages without telling the blocked user
 * that it is a block.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId, type Clients } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllForward, ms, sendText } from "../helpers/fixtures.ts";
import { assertNoneArrived, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { blockedBy, closeFriendsOf, followersOf, followingOf, postStory, sharedStoryServer, TIERS, type StoryServer } from "./support.ts";

describe("social graph", () => {
  let server: StoryServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedStoryServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      const as = (id: string) => server.clientsFor(id, protocol);

      it("follows and unfollows idempotently; both sides' lists show it, with when it started", async () => {
        const [alice, bob, carol] = await newUsers(server, 3, "follow");
        const before = Date.now();
        assert.equal((await as(alice!).social.follow({ userId: bob! })).followed, true);
        assert.equal((await as(alice!).social.follow({ userId: bob! })).followed, false, "following again changes nothing");
        const followers = await as(carol!).social.listFollowers({ userId: bob! });
        assert.deepEqual(followers.followers.map((e) => e.userId), [alice], "anyone can see who follows bob, once");
        assert.ok(Math.abs(ms(followers.followers[0]!.since) - before) < 60_000, "since is about now");
        assert.deepEqual((await followingOf(as(carol!), alice!)).flat(), [bob]);
        assert.deepEqual((await followersOf(as(bob!), "")).flat(), [alice], "empty user_id lists the caller's own");
        assert.deepEqual((await followingOf(as(bob!), bob!)).flat(), [], "following is one-way");

        assert.equal((await as(alice!).social.unfollow({ userId: bob! })).unfollowed, true);
        assert.equal((await as(alice!).social.unfollow({ userId: bob! })).unfollowed, false, "unfollowing again changes nothing");
        assert.deepEqual((await followersOf(as(bob!), bob!)).flat(), []);
        assert.deepEqual((await followingOf(as(alice!), alice!)).flat(), []);
      });

      it("rejects following, befriending or blocking oneself, and answers NOT_FOUND for unknown users", async () => {
        const [alice] = await newUsers(server, 1, "self");
        const A = as(alice!);
        await expectInvalidArgument(A.social.follow({ userId: alice! }), "user_id");
        await expectInvalidArgument(A.social.addCloseFriend({ userId: alice! }), "user_id");
        await expectInvalidArgument(A.social.block({ userId: alice! }), "user_id");
        await expectInvalidArgument(A.social.follow({ userId: "" }), "user_id");
        const ghost = uniqueId("ghost");
        await expectCode(A.social.follow({ userId: ghost }), Code.NotFound);
        await expectCode(A.social.addCloseFriend({ userId: ghost }), Code.NotFound);
        await expectCode(A.social.block({ userId: ghost }), Code.NotFound);
        assert.deepEqual((await followingOf(A, alice!)).flat(), [], "nothing was written");
      });

      it("pages through followers and following, most recent first, each user exactly once", async () => {
        const [star, ...fans] = await newUsers(server, 8, "pages");
        for (const fan of fans) await as(fan).social.follow({ userId: star! });
        for (const fan of fans) await as(star!).social.follow({ userId: fan });
        const newestFirst = [...fans].reverse();
        const followerPages = await followersOf(as(fans[0]!), star!, 3);
        assert.deepEqual(followerPages.map((p) => p.length), [3, 3, 1], "pages of 3, 3 and 1");
        assert.deepEqual(followerPages.flat(), newestFirst, "most recent follow first");
        const followingPages = await followingOf(as(fans[0]!), star!, 3);
        assert.deepEqual(followingPages.flat(), newestFirst);
        await expectCode(as(star!).social.listFollowers({ userId: star!, pageToken: "not-a-token" }), Code.InvalidArgument);
      });

      it("keeps the close-friends list to its owner and does not tell the friend they were added", async () => {
        const [owner, friend, other] = await newUsers(server, 3, "cf");
        const O = as(owner!);
        const F = as(friend!);
        const feed = await openLiveFeed(F, { label: `friend/${protocol}` });
        feeds.push(feed);
        assert.equal((await O.social.addCloseFriend({ userId: friend! })).added, true);
        assert.equal((await O.social.addCloseFriend({ userId: friend! })).added, false, "adding twice changes nothing");
        await O.social.addCloseFriend({ userId: other! });
        assert.deepEqual((await closeFriendsOf(O, 1)).flat(), [other, friend], "the owner's list, most recently added first, paged");
        assert.deepEqual((await closeFriendsOf(F)).flat(), [], "the friend's own list does not show the owner");
        assert.deepEqual((await followersOf(F, owner!)).flat(), [], "being a close friend is not a follow");
        assert.deepEqual((await followingOf(F, owner!)).flat(), []);

        // The next thing the friend hears from the owner is a message; nothing came before it.
        const conv = await createDirect(O, friend!);
        const fence = await sendText(O, conv.id, "fence");
        await feed.waitForEvent(isMessage(conv.id, fence.seq), "the fence message");
        assertNoneArrived(
          feed,
          // Conversation events, presence and the notification of the fence message itself are fine.
          (f) =>
            f.case === "event" && f.value.conversationId === "" && f.value.kind.case !== "presenceChanged" &&
            !(f.value.kind.case === "notificationCreated" && f.value.kind.value.notification?.conversationId === conv.id),
          "an event about being added to close friends",
        );

        assert.equal((await O.social.removeCloseFriend({ userId: friend! })).removed, true);
        assert.equal((await O.social.removeCloseFriend({ userId: friend! })).removed, false);
        assert.deepEqual((await closeFriendsOf(O)).flat(), [other]);
      });

      it("blocks idempotently; only the blocker's list shows it; follows and close friends go both ways; nothing comes back on unblock", async () => {
        const [alice, bob] = await newUsers(server, 2, "block");
        const A = as(alice!);
        const B = as(bob!);
        await A.social.follow({ userId: bob! });
        await B.social.follow({ userId: alice! });
        await A.social.addCloseFriend({ userId: bob! });
        await B.social.addCloseFriend({ userId: alice! });

        assert.equal((await A.social.block({ userId: bob! })).blocked, true);
        assert.equal((await A.social.block({ userId: bob! })).blocked, false, "blocking twice changes nothing");
        assert.deepEqual((await blockedBy(A)).flat(), [bob]);
        assert.deepEqual((await blockedBy(B)).flat(), [], "the blocked user's list does not reveal the block");
        assert.deepEqual((await followingOf(A, alice!)).flat(), [], "alice no longer follows bob");
        assert.deepEqual((await followersOf(A, alice!)).flat(), [], "bob no longer follows alice");
        assert.deepEqual((await closeFriendsOf(A)).flat(), [], "bob left alice's close friends");
        assert.deepEqual((await closeFriendsOf(B)).flat(), [], "alice left bob's close friends");
        await expectCode(B.social.follow({ userId: alice! }), Code.NotFound);
        await expectCode(A.social.follow({ userId: bob! }), Code.NotFound);
        await expectCode(B.social.listFollowers({ userId: alice! }), Code.NotFound);
        await expectCode(B.social.listFollowing({ userId: alice! }), Code.NotFound);

        assert.equal((await A.social.unblock({ userId: bob! })).unblocked, true);
        assert.equal((await A.social.unblock({ userId: bob! })).unblocked, false);
        assert.deepEqual((await blockedBy(A)).flat(), []);
        assert.deepEqual((await followingOf(A, alice!)).flat(), [], "follows are not restored");
        assert.deepEqual((await closeFriendsOf(A)).flat(), [], "close friends are not restored");
        assert.equal((await B.social.follow({ userId: alice! })).followed, true, "following works again");
      });

      it("a follow racing a block never survives it", async () => {
        for (let round = 0; round < 5; round++) {
          const [alice, bob] = await newUsers(server, 2, "brace");
          const A = as(alice!);
          const B = as(bob!);
          const outcomes = await Promise.allSettled([
            B.social.follow({ userId: alice! }),
            A.social.follow({ userId: bob! }),
            A.social.block({ userId: bob! }),
            B.social.follow({ userId: alice! }),
            B.social.addCloseFriend({ userId: alice! }),
            A.social.follow({ userId: bob! }),
          ]);
          for (const o of outcomes) {
            if (o.status === "rejected") assert.equal(ConnectError.from(o.reason).code, Code.NotFound, `round ${round}: ${String(o.reason)}`);
          }
          assert.deepEqual((await followersOf(A, alice!)).flat(), [], `round ${round}: bob follows alice despite the block`);
          assert.deepEqual((await followingOf(A, alice!)).flat(), [], `round ${round}: alice follows bob despite the block`);
          assert.deepEqual((await closeFriendsOf(B)).flat(), [], `round ${round}: alice is on bob's close friends despite the block`);
        }
      });

      it("pages through the blocked list, most recent first", async () => {
        const [me, ...others] = await newUsers(server, 5, "blist");
        for (const o of others) await as(me!).social.block({ userId: o });
        const got = await blockedBy(as(me!), 2);
        assert.deepEqual(got.map((p) => p.length), [2, 2]);
        assert.deepEqual(got.flat(), [...others].reverse());
      });

      it("a block hides the blocker's stories from the blocked user, who cannot follow back into them", async () => {
        const [author, fan] = await newUsers(server, 2, "bstory");
        const A = as(author!);
        const F = as(fan!);
        await F.social.follow({ userId: author! });
        const story = await postStory(A, TIERS[0].privacy);
        assert.equal((await F.stories.getStory({ storyId: story.id })).story?.id, story.id);
        await A.social.block({ userId: fan! });
        await expectCode(F.stories.getStory({ storyId: story.id }), Code.NotFound);
        const tray = await F.stories.listStoryFeed({ includePublic: true });
        assert.ok(!tray.entries.some((e) => e.authorId === author), "the blocker is not in the blocked user's tray");
      });

      it("a block stops DIRECT messages both ways with the same error for both, stores nothing, and leaves groups alone", async () => {
        const [alice, bob, carol] = await newUsers(server, 3, "bdm");
        const A = as(alice!);
        const B = as(bob!);
        const direct = await createDirect(A, bob!);
        await sendText(B, direct.id, "hello before");
        const group = await createGroup(A, [bob!, carol!]);

        await A.social.block({ userId: bob! });
        const send = (c: Clients, text: string) =>
          c.messages.sendMessage({ conversationId: direct.id, clientMessageId: randomUUID(), content: { case: "text", value: text } });
        const fromBlocked = await expectCode(send(B, "are you there?"), Code.FailedPrecondition);
        const fromBlocker = await expectCode(send(A, "I blocked you"), Code.FailedPrecondition);
        assert.equal(fromBlocked.rawMessage, fromBlocker.rawMessage, "the blocked user gets exactly what the blocker gets");
        assert.ok(!/block/i.test(fromBlocked.rawMessage), `the message does not mention a block: ${fromBlocked.rawMessage}`);
        assert.deepEqual(fromBlocked.findDetails(ErrorInfoSchema).map((d) => d.reason), ["CONVERSATION_UNAVAILABLE"]);
        assert.deepEqual(fromBlocker.findDetails(ErrorInfoSchema).map((d) => d.reason), ["CONVERSATION_UNAVAILABLE"]);
        const history = await listAllForward(B, direct.id);
        assert.deepEqual(history.map((m) => m.seq), [1n], "nothing was stored and no seq was used");
        assert.equal((await B.conversations.getConversation({ conversationId: direct.id })).conversation?.lastSeq, 1n);

        const inGroup = await sendText(B, group.id, "groups still work");
        assert.ok(inGroup.seq > 0n);

        await A.social.unblock({ userId: bob! });
        const after = await sendText(B, direct.id, "hello again");
        assert.equal(after.seq, 2n, "after unblocking the DIRECT conversation works again, next seq");
      });
    });
  }
});
