/**
 * UserService.DeleteAccount (issue 16, item 4): after it, nothing the erased user wrote or owned
 * is found by any read path or search, their messages stay as tombstones so others' threads
 * keep their shape, everyone else's data is as it was, and the id signs in again as a new,
 * empty account. A wrong confirm_user_id erases nothing.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { ConversationType, MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllConversations, listAllForward, ms, sendText } from "../helpers/fixtures.ts";
import { eventually, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { e2eClientsFor, registerDevice } from "../helpers/e2e.ts";
import { findInDatabase } from "../lifecycle/support/database-scan.ts";
import { newConversationKey, seal } from "../lifecycle/support/sealed.ts";
import { fixture, mediaFileExists, postStory, startStoryServer, type StoryServer } from "../stories/support.ts";
import { assertErased, eventJson, idsOf, marker } from "./support.ts";

describe("DeleteAccount", () => {
  let server: StoryServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await startStoryServer();
  });
  afterEach(() => {
    for (const feed of feeds.splice(0)) feed.close();
  });
  after(async () => {
    await server?.stop();
  });

  const search = async (clients: Clients, query: string) => (await clients.search.searchMessages({ query, pageSize: 100 })).hits.map((h) => h.message!);

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("erases the account: no read path or search finds what they wrote or owned, tombstones keep the threads, others keep theirs", async () => {
        const [e, a, b, c] = await newUsers(server, 4, "erase");
        const E = e2eClientsFor(server, e!, protocol);
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const C = server.clientsFor(c!, protocol);
        const secret = marker("secret"); // only the erased user ever writes it
        const shared = marker("shared"); // both the erased user and someone else write it

        // a's feed, live before anything happens: its cursor is the "old cursor" replayed later.
        const liveA = await openLiveFeed(A, { label: `a/${protocol}` });
        const liveB = await openLiveFeed(B, { label: `b/${protocol}` });
        feeds.push(liveA, liveB);
        await liveA.waitUntil(() => liveA.lastCursor !== "", "a cursor on a's feed");
        const oldCursor = liveA.lastCursor;

        // The profile, with an avatar.
        const avatar = await E.media.uploadMedia({ data: await fixture("pixel.png") });
        await E.users.updateProfile({ displayName: `Eve ${secret}`, avatarMediaId: avatar.media!.id });

        // A group the erased user created (so they are its only admin) and a DIRECT conversation.
        // Its name is the group's, not the creator's: it stays for the others.
        const group = await createGroup(E, [a!, b!], "the group");
        const own1 = await sendText(E, group.id, `first ${secret} ${shared}`);
        const fromA = await sendText(A, group.id, `a says ${shared}`);
        const own2 = (await E.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: `mention ${secret}` }, mentionUserIds: [a!], replyToSeq: fromA.seq })).message!;
        await E.messages.editMessage({ conversationId: group.id, seq: own1.seq, content: { case: "text", value: `edited ${secret} ${shared}` } });
        const replyByA = (await A.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: "a replies" }, replyToSeq: own1.seq })).message!;
        await A.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: "hey e" }, mentionUserIds: [e!] });
        await E.messages.addReaction({ conversationId: group.id, seq: fromA.seq, emoji: "👍" });
        await B.messages.addReaction({ conversationId: group.id, seq: fromA.seq, emoji: "👍" });
        await A.messages.addReaction({ conversationId: group.id, seq: own1.seq, emoji: "🎉" });
        const direct = await createDirect(E, b!);
        const ownDirect = await sendText(E, direct.id, `direct ${secret}`);
        const fromB = await sendText(B, direct.id, "b in direct");
        const ownCount = 3;

        // Social graph both ways.
        await E.social.follow({ userId: a! });
        await A.social.follow({ userId: e! });
        await E.social.addCloseFriend({ userId: a! });
        await B.social.addCloseFriend({ userId: e! });
        await E.social.block({ userId: c! });
        await C.social.follow({ userId: a! }); // someone else's edges stay

        // Stories: the erased user's, viewed and reacted to by a; a's, viewed and reacted to by the erased user.
        const eStory = await postStory(E, StoryPrivacy.PUBLIC, { caption: `story ${secret}` });
        await A.stories.markStoryViewed({ storyId: eStory.id });
        await A.stories.addStoryReaction({ storyId: eStory.id, emoji: "🔥" });
        const aStory = await postStory(A, StoryPrivacy.PUBLIC, { caption: "a's story" });
        await E.stories.markStoryViewed({ storyId: aStory.id });
        await E.stories.addStoryReaction({ storyId: aStory.id, emoji: "😍" });
        await B.stories.markStoryViewed({ storyId: aStory.id });

        // A device with prekeys.
        await registerDevice(E, 3);

        await eventually(async () => (await search(A, secret)).length === 2, "before: search finds the erased user's words in the group");
        await eventually(async () => (await E.notifications.listNotifications({})).notifications.length > 0, "the erased user has a notification");

        const res = await E.users.deleteAccount({ confirmUserId: e! });
        assert.equal(res.messagesErased, BigInt(ownCount), "messages_erased counts their messages");

        // Profile gone (asked by others: the erased id's own next call makes a new account).
        await expectCode(A.users.getUser({ userId: e! }), Code.NotFound);
        assert.deepEqual((await A.users.batchGetUsers({ userIds: [e!, a!] })).users.map((u) => u.id), [a]);

        // Messages: tombstones at their seqs, without text, history, mentions or reactions.
        const history = await listAllForward(A, group.id);
        assert.deepEqual(history.map((m) => m.seq), [1n, 2n, 3n, 4n, 5n], "the sequence keeps its shape");
        for (const seq of [own1.seq, own2.seq]) assertErased(history.find((m) => m.seq === seq), e!, `group seq ${seq}`);
        assertErased((await B.messages.getMessage({ conversationId: group.id, seq: own1.seq })).message, e!, "GetMessage");
        assert.equal(history.find((m) => m.seq === fromA.seq)?.content.value, `a says ${shared}`, "a's message is untouched");
        const quoting = history.find((m) => m.seq === replyByA.seq);
        assert.equal(quoting?.content.value, "a replies");
        assert.equal(quoting?.replyTo?.content.case, "deleted", "a reply quotes the erased message as deleted");
        assert.deepEqual((await A.messages.listMessageEdits({ conversationId: group.id, seq: own1.seq })).edits, [], "no edit history");
        const reactions = history.find((m) => m.seq === fromA.seq)?.reactions ?? [];
        assert.deepEqual(reactions.map((r) => [r.emoji, r.count]), [["👍", 1n]], "their reaction is gone and the count is right");
        assertErased((await listAllForward(B, direct.id)).find((m) => m.seq === ownDirect.seq), e!, "DIRECT");
        assert.equal((await B.messages.getMessage({ conversationId: direct.id, seq: fromB.seq })).message?.content.value, "b in direct");

        // Search forgets them; the same word written by someone else is still found.
        assert.deepEqual(await search(A, secret), [], "search finds none of their words");
        assert.deepEqual((await search(B, shared)).map((m) => m.senderId), [a], "the same word from someone else is still found");

        // Membership: gone from both; the group keeps an admin, the DIRECT thread stays with b.
        const members = (await A.conversations.listMembers({ conversationId: group.id })).members;
        assert.deepEqual(members.map((m) => m.userId).sort(), [a, b].sort());
        assert.ok(members.some((m) => m.role === MemberRole.ADMIN), "the group still has an admin");
        const directMembers = (await B.conversations.listMembers({ conversationId: direct.id })).members;
        assert.deepEqual(directMembers.map((m) => m.userId), [b], "b keeps the DIRECT thread");

        // Stories and media: NOT_FOUND, files gone; views and reactions on a's story taken back.
        await expectCode(A.stories.getStory({ storyId: eStory.id }), Code.NotFound);
        await expectCode(A.media.getMedia({ mediaId: eStory.media!.id }), Code.NotFound);
        await expectCode(A.media.getMedia({ mediaId: avatar.media!.id }), Code.NotFound);
        assert.equal(await mediaFileExists(server.dataDir, eStory.media!.id), false, "the story's file is gone");
        assert.equal(await mediaFileExists(server.dataDir, avatar.media!.id), false, "the avatar's file is gone");
        const viewers = await A.stories.listStoryViewers({ storyId: aStory.id });
        assert.deepEqual(idsOf(viewers.viewers), [b], "their view is gone");
        assert.equal(viewers.viewCount, 1n, "the view count is right");
        const aStoryNow = (await A.stories.getStory({ storyId: aStory.id })).story!;
        assert.deepEqual(aStoryNow.reactions.filter((r) => r.count > 0n), [], "their story reaction is gone");
        assert.equal(aStoryNow.caption, "a's story", "a's story is untouched");

        // Social graph both ways.
        assert.deepEqual(idsOf((await A.social.listFollowers({ userId: a! })).followers), [c], "only c still follows a");
        assert.deepEqual(idsOf((await A.social.listFollowing({ userId: a! })).following), []);
        assert.deepEqual(idsOf((await B.social.listCloseFriends({})).closeFriends), []);
        assert.deepEqual(idsOf((await A.social.listCloseFriends({})).closeFriends), []);

        // Devices.
        assert.deepEqual((await e2eClientsFor(server, a!, protocol).keys.listDevices({ userIds: [e!], includeRevoked: true })).devices, [], "devices gone");

        // Members' streams saw the deletions (to purge their caches).
        for (const [feed, at] of [[liveA, group.id], [liveB, group.id], [liveB, direct.id]] as const) {
          const seqs = at === group.id ? [own1.seq, own2.seq] : [ownDirect.seq];
          for (const seq of seqs) {
            await feed.waitForEvent((ev) => ev.conversationId === at && ev.kind.case === "messageDeleted" && ev.kind.value.messageSeq === seq, `message_deleted of ${seq}`);
          }
        }

        // Replay from the old cursor: the events are there (gapless), none carries their text.
        const replay = openFeed(A, { cursor: oldCursor, label: `a-replay/${protocol}` });
        feeds.push(replay);
        const caughtUp = await replay.caughtUp();
        const replayed = replay.received.slice(0, caughtUp).flatMap((r) => (r.frame.case === "event" ? [r.frame.value] : []));
        assert.ok(replayed.some((ev) => ev.kind.case === "messageCreated" && ev.kind.value.message?.seq === own1.seq), "their message_created is still in the log");
        for (const ev of replayed) assert.ok(!eventJson(ev).includes(secret), `a replayed event carries their text: ${eventJson(ev).slice(0, 300)}`);

        // Nothing anywhere in the database (PostgreSQL: every table, as a dump would show it).
        if (server.env.DATABASE_URL) assert.deepEqual(await findInDatabase(server.env.DATABASE_URL, [secret]), [], "their words are nowhere in the database");

        // The id signs in again as a new, empty account that sees nothing of the old one.
        const me = (await E.users.getMe({})).user!;
        assert.equal(me.displayName, "");
        assert.equal(me.avatarMediaId, "");
        assert.ok(ms(me.createdAt) >= ms(eStory.createdAt), "a new account");
        assert.deepEqual(await listAllConversations(E), []);
        assert.deepEqual((await E.notifications.listNotifications({})).notifications, []);
        assert.deepEqual(idsOf((await E.social.listBlocked({})).blocked), []);
        await expectCode(E.messages.listMessages({ conversationId: group.id }), Code.NotFound);
        const newDirect = await createDirect(E, b!);
        assert.notEqual(newDirect.id, direct.id, "a new DIRECT conversation, not the old thread");
        const replayAsNew = openFeed(E, { cursor: oldCursor, label: `e-new-replay/${protocol}` });
        feeds.push(replayAsNew);
        const newCaughtUp = await replayAsNew.caughtUp();
        const seenByNew = replayAsNew.received.slice(0, newCaughtUp).flatMap((r) => (r.frame.case === "event" ? [r.frame.value] : []));
        assert.ok(seenByNew.every((ev) => ev.conversationId === newDirect.id), `the new account replays nothing of the old one: ${seenByNew.map((ev) => ev.kind.case).join(", ")}`);
      });

      it("erases their encrypted messages too: envelopes and blind-index tokens gone, the conversation moves to its next key epoch", async () => {
        const [e, a, b] = await newUsers(server, 3, "sealed");
        const E = server.clientsFor(e!, protocol);
        const B = server.clientsFor(b!, protocol);
        const created = await E.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [a!, b!], name: "sealed", encrypted: true, blindSearch: true });
        const conv = created.conversation!;
        const key = newConversationKey(conv.keyEpoch);
        const envelope = seal(key, marker("sealedtext"));
        const token = randomBytes(32);
        const sent = (await E.messages.sendMessage({ conversationId: conv.id, clientMessageId: randomUUID(), content: { case: "envelope", value: envelope }, searchTokens: [token] })).message!;
        const blind = async () => (await B.search.searchMessages({ blindQueries: [{ conversationId: conv.id, keyEpoch: key.epoch, tokens: [token] }] })).hits;
        assert.equal((await blind()).length, 1, "before: the blind query finds it");

        await E.users.deleteAccount({ confirmUserId: e! });
        assertErased((await B.messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message, e!, "encrypted message");
        assert.deepEqual(await blind(), [], "the blind index forgot it");
        const after = (await B.conversations.getConversation({ conversationId: conv.id })).conversation!;
        assert.equal(after.keyEpoch, conv.keyEpoch + 1, "leaving moved the key epoch on, as any member leaving does");
        if (server.env.DATABASE_URL) assert.deepEqual(await findInDatabase(server.env.DATABASE_URL, [envelope.ciphertext, token]), [], "no ciphertext or token left");
      });

      it("refuses a confirm_user_id that is not the caller's own (INVALID_ARGUMENT) and erases nothing", async () => {
        const [e, a, b] = await newUsers(server, 3, "confirm");
        const E = server.clientsFor(e!, protocol);
        const A = server.clientsFor(a!, protocol);
        await E.users.updateProfile({ displayName: "still here" });
        const group = await createGroup(E, [a!, b!]);
        const m = await sendText(E, group.id, "still readable");
        await E.social.follow({ userId: a! });
        for (const confirmUserId of ["", a!, `${e}x`, e!.toUpperCase()]) {
          await expectInvalidArgument(E.users.deleteAccount({ confirmUserId }), "confirm_user_id");
        }
        assert.equal((await A.users.getUser({ userId: e! })).user?.displayName, "still here");
        assert.equal((await A.messages.getMessage({ conversationId: group.id, seq: m.seq })).message?.content.value, "still readable");
        assert.deepEqual(idsOf((await A.social.listFollowers({ userId: a! })).followers), [e]);
        assert.equal((await sendText(E, group.id, "and can still write")).seq, m.seq + 1n, "no erasure is under way");
      });

      it("is fine to call twice: the second call erases the (empty) account the id has by then", async () => {
        const [e, a, b] = await newUsers(server, 3, "twice");
        const E = server.clientsFor(e!, protocol);
        const group = await createGroup(E, [a!, b!]);
        await sendText(E, group.id, "one");
        await sendText(E, group.id, "two");
        const [first, concurrent] = await Promise.all([E.users.deleteAccount({ confirmUserId: e! }), E.users.deleteAccount({ confirmUserId: e! })]);
        assert.equal(first.messagesErased, 2n);
        assert.equal(concurrent.messagesErased, 2n, "a call while it runs joins the same erasure");
        const again = await E.users.deleteAccount({ confirmUserId: e! });
        assert.equal(again.messagesErased, 0n);
        const history = await listAllForward(server.clientsFor(a!, protocol), group.id);
        for (const m of history) assertErased(m, e!, `seq ${m.seq}`);
        await expectCode(server.clientsFor(a!, protocol).users.getUser({ userId: e! }), Code.NotFound);
      });
    });
  }
});
