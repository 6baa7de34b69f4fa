/**
 * Issue 16, "a message past retention is found by no read path and no search", before any sweep
 * runs (the sweeper is set to an hour): conversations keep messages for an hour; some messages
 * are made two hours old (created_at moved back in the database, as if sent then). From that
 * moment no call returns them or anything about them — history, single reads, edit history,
 * reply quotes, last-message previews, reactions, edits and deletes, plain and blind search,
 * notification previews, attachments, and the Subscribe replay from a cursor taken before they
 * were sent — while newer messages, and equally old ones of a conversation without retention,
 * are all still there.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { ListDirection } from "../../gen/parley/v1/message_service_pb.ts";
import { SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import { newUsers, type Clients } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllConversations, listAllForward, sendText } from "../helpers/fixtures.ts";
import { Feed } from "../helpers/feed.ts";
import { blindToken, createEncrypted, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";
import { expectHits, expectNoHits, orderName, waitForHits } from "../search/helpers.ts";
import { eventually, HOUR_MS, RetentionServer } from "./support.ts";

const HOUR = { seconds: 3600n, nanos: 0 };

/** The events a Subscribe from `cursor` replays, up to its caught_up frame. */
async function replay(c: Clients, cursor: string, label: string): Promise<Event[]> {
  const feed = new Feed(c, { cursor, label });
  try {
    const caughtUp = await feed.caughtUp();
    return feed.received.slice(0, caughtUp).flatMap((r) => (r.frame.case === "event" ? [r.frame.value] : []));
  } finally {
    feed.close();
  }
}

/** The message seq an event is about, if it is about one. */
function aboutSeq(e: Event): bigint | undefined {
  switch (e.kind.case) {
    case "messageCreated":
    case "messageEdited":
      return e.kind.value.message?.seq;
    case "messageDeleted":
    case "reactionAdded":
    case "reactionRemoved":
      return e.kind.value.messageSeq;
    default:
      return undefined;
  }
}

describe("retention: every read path hides a message past retention at once", function () {
  this.timeout(120_000);
  let rs: RetentionServer;
  before(async () => {
    rs = await RetentionServer.start({ RETENTION_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  after(async () => {
    await rs?.stop();
  });

  it("hides old messages (and their edits, reactions, quotes, previews, notifications, search hits, attachments and replayed events) while newer ones stay", async () => {
    const [ada, bob, cy] = (await newUsers(rs.server, 3, "paths")) as [string, string, string];
    let A = rs.clientsFor(ada, "grpc");
    let B = rs.clientsFor(bob, "connect");
    const oldWord = `zqold${randomUUID().slice(0, 8)}`;
    const newWord = `zqnew${randomUUID().slice(0, 8)}`;

    // A cursor from before anything was sent: the replay at the end starts here.
    const first = new Feed(B, { label: "bob (cursor)" });
    await first.caughtUp();
    const cursor = first.lastCursor;
    first.close();

    // A group with a one-hour retention: an old message (edited, reacted to, mentioning Bob),
    // then a reply quoting it and a newer message mentioning Bob.
    const group = await createGroup(A, [bob, cy]);
    await A.conversations.updateConversation({ conversationId: group.id, messageRetention: HOUR });
    const sentOld = await A.messages.sendMessage({
      conversationId: group.id,
      clientMessageId: randomUUID(),
      content: { case: "text", value: `${oldWord} first draft` },
      mentionUserIds: [bob],
    });
    const old = sentOld.message!;
    await A.messages.editMessage({ conversationId: group.id, seq: old.seq, content: { case: "text", value: `${oldWord} as it stands` } });
    await B.messages.addReaction({ conversationId: group.id, seq: old.seq, emoji: "👍" });
    const reply = (await B.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), replyToSeq: old.seq, content: { case: "text", value: `${newWord} reply` } })).message!;
    assert.ok(reply.replyTo, "before: the reply quotes the message");
    const C = rs.clientsFor(cy, "grpc");
    const fresh = (await C.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: `${newWord} fresh` }, mentionUserIds: [bob] })).message!;
    await B.messages.addReaction({ conversationId: group.id, seq: fresh.seq, emoji: "🎉" });

    // A DIRECT conversation with a one-hour retention whose only message gets old (so its
    // last-message preview must go), and a group without retention whose old message stays.
    const direct = await createDirect(A, bob);
    await B.conversations.updateConversation({ conversationId: direct.id, messageRetention: HOUR });
    const directOld = await sendText(A, direct.id, `${oldWord} direct`);
    const keeper = await createGroup(A, [bob, cy], "keeps everything");
    const kept = await sendText(A, keeper.id, `${oldWord} kept`);

    // An encrypted group with blind search and a one-hour retention: an old and a new message
    // with the same token, an old and a new attachment.
    const sealed = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
    await A.conversations.updateConversation({ conversationId: sealed.id, messageRetention: HOUR });
    const token = blindToken();
    const sealedOld = await sendEnvelope(A, sealed.id, sealedEnvelope(1), { searchTokens: [token] });
    const sealedNew = await sendEnvelope(A, sealed.id, sealedEnvelope(1), { searchTokens: [token] });
    const oldFile = (await A.media.uploadMedia({ data: new Uint8Array(64).fill(1), conversationId: sealed.id })).media!;
    const newFile = (await A.media.uploadMedia({ data: new Uint8Array(64).fill(2), conversationId: sealed.id })).media!;

    // Everything is indexed and notified before it gets old, so nothing passes for lack of it.
    await waitForHits(B, { query: oldWord }, [old, directOld, kept]);
    await waitForHits(B, { query: newWord }, [reply, fresh]);
    await eventually(async () => (await B.notifications.listNotifications({ pageSize: 100 })).notifications.filter((n) => n.conversationId === group.id).length === 3, "Bob's three notifications (mention, reply, mention) are written");

    await rs.backdate(group.id, [old.seq], 2 * HOUR_MS);
    await rs.backdate(direct.id, [directOld.seq], 2 * HOUR_MS);
    await rs.backdate(keeper.id, [kept.seq], 2 * HOUR_MS);
    await rs.backdate(sealed.id, [sealedOld.seq], 2 * HOUR_MS);
    await rs.backdateMedia([oldFile.id], 2 * HOUR_MS);

    for (const protocol of ["grpc", "connect"] as const) {
      A = rs.clientsFor(ada, protocol);
      B = rs.clientsFor(bob, protocol);
      const what = (s: string) => `${s} (${protocol})`;

      // History, both ways, and single reads.
      const forward = await listAllForward(B, group.id);
      assert.deepEqual(forward.map((m) => m.seq), [reply.seq, fresh.seq], what("ListMessages forward leaves the old message out"));
      const backward = await B.messages.listMessages({ conversationId: group.id, direction: ListDirection.BACKWARD, pageSize: 10 });
      assert.deepEqual(backward.messages.map((m) => m.seq), [fresh.seq, reply.seq], what("ListMessages backward too"));
      const quoted = forward[0]!;
      assert.equal(quoted.replyToSeq, old.seq, what("the reply still says what it replied to"));
      assert.equal(quoted.replyTo, undefined, what("but quotes nothing"));
      assert.equal((await B.messages.getMessage({ conversationId: group.id, seq: reply.seq })).message?.replyTo, undefined, what("GetMessage quotes nothing"));
      assert.deepEqual(forward[1]!.reactions.map((r) => r.emoji), ["🎉"], what("a newer message keeps its reactions"));
      await expectCode(B.messages.getMessage({ conversationId: group.id, seq: old.seq }), Code.NotFound);
      await expectCode(B.messages.listMessageEdits({ conversationId: group.id, seq: old.seq }), Code.NotFound);
      await expectCode(B.messages.addReaction({ conversationId: group.id, seq: old.seq, emoji: "👀" }), Code.NotFound);
      await expectCode(B.messages.removeReaction({ conversationId: group.id, seq: old.seq, emoji: "👍" }), Code.NotFound);
      await expectCode(A.messages.editMessage({ conversationId: group.id, seq: old.seq, content: { case: "text", value: "revived?" } }), Code.NotFound);
      await expectCode(A.messages.deleteMessage({ conversationId: group.id, seq: old.seq }), Code.NotFound);
      assert.deepEqual((await listAllForward(B, direct.id)).map((m) => m.seq), [], what("the DIRECT conversation's history is empty"));
      assert.deepEqual((await listAllForward(B, keeper.id)).map((m) => m.id), [kept.id], what("a conversation without retention keeps its old message"));

      // Last-message previews.
      const conversations = await listAllConversations(B);
      assert.equal(conversations.find((c) => c.id === group.id)?.lastMessage?.seq, fresh.seq, what("the group's preview is its newest message"));
      assert.equal(conversations.find((c) => c.id === direct.id)?.lastMessage, undefined, what("ListConversations: no preview of a message past retention"));
      assert.equal((await B.conversations.getConversation({ conversationId: direct.id })).conversation?.lastMessage, undefined, what("nor in GetConversation"));
      assert.equal(conversations.find((c) => c.id === keeper.id)?.lastMessage?.seq, kept.seq, what("the conversation without retention keeps its preview"));

      // Search, in both orders (the broad-word plan included: every message here has the word).
      for (const order of [SearchOrder.RELEVANCE, SearchOrder.RECENCY]) {
        await expectHits(B, { query: oldWord, order }, [kept], what(`search ${orderName(order)} finds only the old message of the conversation without retention`));
        await expectHits(B, { query: newWord, order }, [reply, fresh], what(`search ${orderName(order)} still finds the newer ones`));
      }
      await expectNoHits(B, { query: oldWord, conversationIds: [group.id, direct.id] }, what("search within the conversations with retention"));
      const blind = await B.search.searchMessages({ blindQueries: [{ conversationId: sealed.id, keyEpoch: 1, tokens: [token] }] });
      assert.deepEqual(blind.hits.map((h) => h.message?.seq), [sealedNew.seq], what("blind search finds only the newer sealed message"));
      assert.deepEqual((await listAllForward(B, sealed.id)).map((m) => m.seq), [sealedNew.seq], what("the sealed history"));

      // Notifications: the one pointing at the old message shows no preview of it.
      const notifications = (await B.notifications.listNotifications({ pageSize: 100 })).notifications.filter((n) => n.conversationId === group.id);
      const aboutOld = notifications.find((n) => n.messageSeq === old.seq);
      assert.ok(aboutOld, what("the notification itself (no content) is there"));
      assert.equal(aboutOld.message, undefined, what("without a preview of the old message"));
      assert.equal(notifications.find((n) => n.messageSeq === fresh.seq)?.message?.content.case, "text", what("a newer one keeps its preview"));

      // Attachments go with their conversation's retention.
      await expectCode(B.media.getMedia({ mediaId: oldFile.id }), Code.NotFound);
      await expectCode(B.media.downloadMedia({ mediaId: oldFile.id }), Code.NotFound);
      await expectCode(A.media.downloadMedia({ mediaId: oldFile.id }), Code.NotFound);
      assert.equal((await B.media.downloadMedia({ mediaId: newFile.id })).data.length, 64, what("a newer attachment downloads"));

      // The replay from before it all: nothing about the old messages, the rest as it happened.
      const events = await replay(B, cursor, `bob replay (${protocol})`);
      const about = (conversationId: string, seq: bigint) => events.filter((e) => e.conversationId === conversationId && aboutSeq(e) === seq);
      assert.deepEqual(about(group.id, old.seq).map((e) => e.kind.case), [], what("no created, edited or reaction event of the old message"));
      assert.deepEqual(about(direct.id, directOld.seq).map((e) => e.kind.case), [], what("nor of the old DIRECT message"));
      assert.deepEqual(about(sealed.id, sealedOld.seq).map((e) => e.kind.case), [], what("nor of the old sealed message"));
      const replayedReply = about(group.id, reply.seq).find((e) => e.kind.case === "messageCreated");
      assert.ok(replayedReply?.kind.case === "messageCreated", what("the reply is replayed"));
      assert.equal(replayedReply.kind.value.message?.replyToSeq, old.seq);
      assert.equal(replayedReply.kind.value.message?.replyTo, undefined, what("without the quote"));
      assert.deepEqual(about(group.id, fresh.seq).map((e) => e.kind.case), ["messageCreated", "reactionAdded"], what("the newer message and its reaction"));
      assert.deepEqual(about(keeper.id, kept.seq).map((e) => e.kind.case), ["messageCreated"], what("the old message of the conversation without retention"));
      assert.ok(events.some((e) => e.conversationId === group.id && e.kind.case === "conversationUpdated"), what("events about no message stay"));
      assert.ok(!JSON.stringify(events.map((e) => (e.kind.case === "messageCreated" || e.kind.case === "messageEdited" ? e.kind.value.message?.content : null)), (_, v) => (typeof v === "bigint" ? String(v) : v)).includes("first draft"), what("no replayed event carries the old text"));
    }
    // A reply sent now to the old message quotes nothing, in the response and in the live event.
    const live = new Feed(rs.clientsFor(cy), { label: "cy" });
    await live.ready();
    const late = (await B.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), replyToSeq: old.seq, content: { case: "text", value: "late reply" } })).message!;
    assert.equal(late.replyToSeq, old.seq);
    assert.equal(late.replyTo, undefined, "the late reply quotes nothing");
    const { event } = await live.waitForEvent((e) => e.kind.case === "messageCreated" && e.kind.value.message?.seq === late.seq, "the late reply, live");
    assert.ok(event.kind.case === "messageCreated" && event.kind.value.message?.replyTo === undefined, "nor does its live event");
    live.close();
  });

  it("does not bring back what had passed retention when the retention is lengthened or cleared", async () => {
    const [ada, bob] = (await newUsers(rs.server, 2, "floor")) as [string, string];
    let A = rs.clientsFor(ada);
    const direct = await createDirect(A, bob);
    await A.conversations.updateConversation({ conversationId: direct.id, messageRetention: HOUR });
    const gone = await sendText(A, direct.id, "two hours old");
    const young = await sendText(A, direct.id, "half an hour old");
    await rs.backdate(direct.id, [gone.seq], 2 * HOUR_MS);
    await rs.backdate(direct.id, [young.seq], HOUR_MS / 2);
    A = rs.clientsFor(ada);
    assert.deepEqual((await listAllForward(A, direct.id)).map((m) => m.seq), [young.seq]);
    await A.conversations.updateConversation({ conversationId: direct.id, messageRetention: { seconds: 86_400n, nanos: 0 } });
    assert.deepEqual((await listAllForward(A, direct.id)).map((m) => m.seq), [young.seq], "lengthened: the old one stays gone");
    await rs.clientsFor(bob).conversations.updateConversation({ conversationId: direct.id, messageRetention: { seconds: 0n, nanos: 0 } });
    assert.deepEqual((await listAllForward(A, direct.id)).map((m) => m.seq), [young.seq], "cleared: still gone");
    await expectCode(A.messages.getMessage({ conversationId: direct.id, seq: gone.seq }), Code.NotFound);
    const later = await sendText(A, direct.id, "after clearing");
    assert.deepEqual((await listAllForward(A, direct.id)).map((m) => m.seq), [young.seq, later.seq], "and newer ones are kept for good");
  });
});
