/**
 * Deleting (issue 5, "Delete"): a deleted message stays in the sequence as a tombstone saying
 * who deleted it and when, and nothing of what it said can be read back, through the API or
 * from the database. Group admins may delete any message of their group, and that is on record.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllForward, ms, sendText } from "../helpers/fixtures.ts";
import { assertStoredEvent, eventually, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { findInDatabase } from "./support/database-scan.ts";
import { edit, getMessage, remove, send, textOf } from "./support/messages.ts";
import { allNotifications } from "./support/notifications.ts";
import { listedConversation, walkPages } from "./support/pages.ts";
import { newConversationKey, seal } from "./support/sealed.ts";

/** A string that appears nowhere else: the test looks for it in every table. */
function marker(label: string): string {
  return `${label}-${randomBytes(8).toString("hex")}`;
}

/** Asserts that a message is a tombstone: no content, mentions or reactions; who and when. */
function assertTombstone(m: Message | undefined, deletedBy: string, what: string): void {
  assert.ok(m, `${what}: the message is still there`);
  assert.equal(m.deletion?.deletedBy, deletedBy, `${what}: deleted_by`);
  assert.ok(m.deletion?.deletedAt, `${what}: deleted_at is set`);
  assert.ok(Math.abs(ms(m.deletion.deletedAt) - Date.now()) < 5 * 60_000, `${what}: deleted_at is about now`);
  assert.equal(m.content.case, undefined, `${what}: no content`);
  assert.deepEqual(m.mentionedUserIds, [], `${what}: no mentions`);
  assert.equal(m.mentionsEveryone, false, `${what}: no everyone mention`);
  assert.deepEqual(m.reactions, [], `${what}: no reactions`);
}

describe("DeleteMessage", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("leaves a tombstone at the same seq saying who deleted it and when; the sequence stays gapless", async () => {
        const [a, b, c] = await newUsers(server, 3, "tomb");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        for (const t of ["one", "two", "three"]) await sendText(A, conv.id, t);
        const tomb = await remove(A, conv.id, 2n);
        assertTombstone(tomb, a!, "DeleteMessage's response");
        assert.equal(tomb.seq, 2n);

        const B = server.clientsFor(b!, protocol);
        const history = await listAllForward(B, conv.id);
        assert.deepEqual(history.map((m) => m.seq), [1n, 2n, 3n], "the deleted seq is still in the sequence");
        assert.deepEqual(history.map(textOf), ["one", "", "three"]);
        assertTombstone(history[1], a!, "ListMessages");
        assertTombstone(await getMessage(B, conv.id, 2n), a!, "GetMessage");
        assert.equal(ms(history[1]!.deletion!.deletedAt), ms(tomb.deletion!.deletedAt), "the same deleted_at everywhere");
        assert.equal((await sendText(B, conv.id, "four")).seq, 4n, "a delete frees no seq and uses none");
      });

      it("does nothing when a message is deleted twice", async () => {
        const [a, b, c] = await newUsers(server, 3, "twice");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "once is enough");
        const feed = await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/${protocol}` });
        feeds.push(feed);
        const first = await remove(A, conv.id, m.seq);
        const second = await remove(A, conv.id, m.seq);
        assertTombstone(second, a!, "the second delete's response");
        assert.equal(ms(second.deletion!.deletedAt), ms(first.deletion!.deletedAt), "the second delete keeps the first deleted_at");
        // An admin deleting it again is no moderation either.
        await A.conversations.setMemberRole({ conversationId: conv.id, userId: c!, role: MemberRole.ADMIN });
        const third = await remove(server.clientsFor(c!, protocol), conv.id, m.seq);
        assert.equal(third.deletion?.deletedBy, a, "still deleted by the sender");

        const fence = await sendText(A, conv.id, "fence");
        await feed.waitForEvent(isMessage(conv.id, fence.seq), "the fence message");
        const deletions = feed.events.filter((e) => e.conversationId === conv.id && e.kind.case === "messageDeleted");
        assert.equal(deletions.length, 1, `exactly one message_deleted; received ${feed.summary()}`);
        const log = await A.messages.listModerationLog({ conversationId: conv.id });
        assert.deepEqual(log.entries, [], "deleting a deleted message is no moderation");
      });

      it("sends message_deleted with who and when to every member's feed", async () => {
        const [a, b, c] = await newUsers(server, 3, "delevt");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "take it back");
        const fb = await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/${protocol}` });
        const fc = await openLiveFeed(server.clientsFor(c!, protocol), { label: `c/${protocol}` });
        feeds.push(fb, fc);
        const tomb = await remove(A, conv.id, m.seq);
        for (const feed of [fb, fc]) {
          const { event } = await feed.waitForEvent(
            (e) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === m.seq,
            "message_deleted",
          );
          assertStoredEvent(event, conv.id, a);
          const payload = event.kind.case === "messageDeleted" ? event.kind.value : undefined;
          assert.equal(payload?.messageId, m.id);
          assert.equal(payload?.deletion?.deletedBy, a);
          assert.equal(ms(payload?.deletion?.deletedAt), ms(tomb.deletion?.deletedAt));
          assert.equal(payload?.moderated, false, "the sender deleting their own message is no moderation");
        }
      });

      it("lets a group admin delete another member's message, on record in the moderation log that admins can list", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "moderate");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const C = server.clientsFor(c!, protocol);
        const conv = await createGroup(A, [b!, c!, d!]);
        const fc = await openLiveFeed(C, { label: `c/${protocol}` });
        feeds.push(fc);
        const spam = await sendText(B, conv.id, "buy cheap watches");
        await sendText(B, conv.id, "a fine message");
        const ownByAdmin = await sendText(A, conv.id, "admin's own words");

        const tomb = await remove(A, conv.id, spam.seq);
        assertTombstone(tomb, a!, "moderated tombstone");
        const { event } = await fc.waitForEvent(
          (e) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === spam.seq,
          "message_deleted of the moderated message",
        );
        assert.equal(event.kind.case === "messageDeleted" && event.kind.value.moderated, true, "moderated=true");
        await remove(A, conv.id, ownByAdmin.seq); // an admin deleting their own message is no moderation

        // Another admin sees the record too.
        await A.conversations.setMemberRole({ conversationId: conv.id, userId: c!, role: MemberRole.ADMIN });
        for (const admin of [A, C]) {
          const { entries } = await admin.messages.listModerationLog({ conversationId: conv.id });
          assert.equal(entries.length, 1, "one moderation: the admin's own delete is not one");
          const [entry] = entries;
          assert.equal(entry?.messageId, spam.id);
          assert.equal(entry?.messageSeq, spam.seq);
          assert.equal(entry?.senderId, b);
          assert.equal(entry?.deletedBy, a);
          assert.equal(ms(entry?.deletedAt), ms(tomb.deletion?.deletedAt));
        }
        await expectCode(server.clientsFor(d!, protocol).messages.listModerationLog({ conversationId: conv.id }), Code.PermissionDenied);
        const [outsider] = await newUsers(server, 1, "modout");
        await expectCode(server.clientsFor(outsider!, protocol).messages.listModerationLog({ conversationId: conv.id }), Code.NotFound);
      });

      it("does not let a member who is not an admin delete someone else's message (PERMISSION_DENIED); outsiders get NOT_FOUND", async () => {
        const [a, b, c, outsider] = await newUsers(server, 4, "nodelete");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fromA = await sendText(A, conv.id, "admin's message");
        const fromC = await sendText(server.clientsFor(c!, protocol), conv.id, "c's message");
        const B = server.clientsFor(b!, protocol);
        await expectCode(B.messages.deleteMessage({ conversationId: conv.id, seq: fromA.seq }), Code.PermissionDenied);
        await expectCode(B.messages.deleteMessage({ conversationId: conv.id, seq: fromC.seq }), Code.PermissionDenied);
        await expectCode(server.clientsFor(outsider!, protocol).messages.deleteMessage({ conversationId: conv.id, seq: fromC.seq }), Code.NotFound);
        await expectCode(A.messages.deleteMessage({ conversationId: conv.id, seq: 99n }), Code.NotFound);
        for (const m of [fromA, fromC]) {
          const still = await getMessage(B, conv.id, m.seq);
          assert.equal(still.deletion, undefined, "not deleted");
          assert.equal(textOf(still), textOf(m), "content intact");
        }

        // In a DIRECT conversation there are no moderators: the peer cannot delete my message.
        const direct = await createDirect(A, b!);
        const dm = await sendText(A, direct.id, "between us");
        await expectCode(B.messages.deleteMessage({ conversationId: direct.id, seq: dm.seq }), Code.PermissionDenied);
        assert.equal((await getMessage(A, direct.id, dm.seq)).deletion, undefined);
      });

      it("erases reactions, mentions and edit history with the content, and no list shows the text", async () => {
        const [a, b, c] = await newUsers(server, 3, "erase");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const text = marker("erase-me");
        const m = await send(A, conv.id, { body: text, mentionUserIds: [b!, c!] });
        await edit(A, conv.id, m.seq, `${text} (edited)`);
        await B.messages.addReaction({ conversationId: conv.id, seq: m.seq, emoji: "👍" });
        await remove(A, conv.id, m.seq);

        const tomb = await getMessage(B, conv.id, m.seq);
        assertTombstone(tomb, a!, "after delete");
        assert.deepEqual((await B.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq })).edits, [], "no edit history");
        const listed = (await listedConversation(B, conv.id))!;
        const preview = listed.lastMessage?.content;
        assert.ok(!(preview?.case === "text" && preview.value.includes(text)), `the conversation list does not preview deleted text: ${JSON.stringify(preview)}`);
        assert.equal(listed.unreadCount, 0n, "a deleted message is not unread");
        assert.equal(listed.unreadMentionCount, 0n, "a deleted mention is not an unread mention");
      });

      it("erases the content from every table of the database (PostgreSQL mode reads the tables)", async function () {
        const databaseUrl = server.env.DATABASE_URL;
        const [a, b, c] = await newUsers(server, 3, "scrub");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const feed = await openLiveFeed(B, { label: `b/${protocol}` });
        feeds.push(feed);
        const original = marker("original");
        const edited = marker("edited");
        const key = newConversationKey();
        const sealed = seal(key, marker("sealed"));
        const survivor = marker("survivor");

        const m = await send(A, conv.id, { body: original, mentionUserIds: [b!] });
        await edit(A, conv.id, m.seq, edited);
        await B.messages.addReaction({ conversationId: conv.id, seq: m.seq, emoji: "🔥" });
        const reply = await send(B, conv.id, { body: survivor, replyToSeq: m.seq });
        const secret = await send(A, conv.id, { body: sealed });
        await feed.waitForEvent(isMessage(conv.id, secret.seq), "the encrypted message on the feed (its event is stored)");
        // The notifier has turned the mention into a notification for b (and a, replied to, into one for a).
        await eventually(async () => (await allNotifications(B)).some((n) => n.conversationId === conv.id && n.messageSeq === m.seq), "b notified of the mention", 15_000);
        const needles = [original, edited, sealed.ciphertext, survivor];
        if (databaseUrl) {
          const before = await findInDatabase(databaseUrl, needles);
          for (const [i, what] of ["the original text", "the edited text", "the ciphertext", "the reply"].entries()) {
            assert.ok(before.some((s) => s.needle === i), `before the deletes ${what} is in the database (so the scan can see it): ${JSON.stringify(before)}`);
          }
        }

        await remove(A, conv.id, m.seq);
        await remove(A, conv.id, secret.seq);
        await feed.waitForEvent(
          (e: Event) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === secret.seq,
          "the second message_deleted",
        );
        assert.equal(textOf(await getMessage(B, conv.id, reply.seq)), survivor, "the reply itself is not deleted");
        if (!databaseUrl) return; // the embedded database lives inside the server: nothing to read from outside
        const after = await findInDatabase(databaseUrl, needles);
        const leaks = after.filter((s) => s.needle !== 3).map((s) => `${["original text", "edited text", "ciphertext"][s.needle]} in ${s.table} (${s.rows} rows)`);
        assert.deepEqual(leaks, [], "nothing of a deleted message can be read back from any table");
        assert.ok(after.some((s) => s.needle === 3), "the reply that was not deleted is still stored");
      });

      it("keeps a deleted message out of every later read, also for a member who joins afterwards", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "latejoin");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const text = marker("before-join");
        const m = await sendText(A, conv.id, text);
        await remove(A, conv.id, m.seq);
        await A.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
        const D = server.clientsFor(d!, protocol);
        const seen = await listAllForward(D, conv.id).catch(() => [] as Message[]);
        assert.ok(seen.every((x) => !textOf(x).includes(text)), "the new member never sees the deleted text");
      });
    });
  }

  it("never replays the deleted text to a client resuming from a cursor older than the message", async () => {
    const [a, b, c] = await newUsers(server, 3, "replaydel");
    const A = server.clientsFor(a!, "grpc");
    const conv = await createGroup(A, [b!, c!]);
    const first = await openLiveFeed(server.clientsFor(b!, "connect"), { label: "b before" });
    feeds.push(first);
    const fenceBefore = await sendText(A, conv.id, "before");
    await first.waitForEvent(isMessage(conv.id, fenceBefore.seq), "a message before the secret");
    const cursor = first.lastCursor;
    first.close();

    const text = marker("replayed");
    const m = await sendText(A, conv.id, text);
    await edit(A, conv.id, m.seq, `${text} edited`);
    await remove(A, conv.id, m.seq);
    const resumed = openLiveFeed(server.clientsFor(b!, "grpc"), { cursor, label: "b resumed" });
    const feed = await resumed;
    feeds.push(feed);
    await feed.waitForEvent(
      (e) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === m.seq,
      "the replayed message_deleted",
    );
    const leaks = feed.events.filter((e) => {
      const msg = e.kind.case === "messageCreated" || e.kind.case === "messageEdited" ? e.kind.value.message : undefined;
      return msg?.seq === m.seq && (textOf(msg).includes(text) || msg.mentionedUserIds.length > 0);
    });
    assert.deepEqual(leaks.map((e) => e.kind.case), [], "no replayed event carries the deleted text");
  });

  it("lets a delete win for good over concurrent edits: no content and no history come back", async function () {
    const databaseUrl = server.env.DATABASE_URL;
    const [a, b, c] = await newUsers(server, 3, "editrace");
    const A = server.clientsFor(a!, "grpc");
    const conv = await createGroup(A, [b!, c!]);
    const text = marker("race");
    for (let round = 0; round < 5; round++) {
      const m = await sendText(A, conv.id, `${text} v1`);
      const results = await Promise.allSettled([
        ...Array.from({ length: 4 }, (_, i) => edit(server.clientsFor(a!, i % 2 ? "grpc" : "connect"), conv.id, m.seq, `${text} v${i + 2}`)),
        remove(A, conv.id, m.seq),
        ...Array.from({ length: 4 }, (_, i) => edit(server.clientsFor(a!, i % 2 ? "connect" : "grpc"), conv.id, m.seq, `${text} w${i + 2}`)),
      ]);
      for (const r of results) {
        if (r.status === "rejected") assert.equal((r.reason as { code?: Code }).code, Code.FailedPrecondition, `an edit that lost the race is FAILED_PRECONDITION: ${String(r.reason)}`);
      }
      const after = await getMessage(server.clientsFor(b!, "connect"), conv.id, m.seq);
      assertTombstone(after, a!, `round ${round}`);
      assert.deepEqual((await A.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq })).edits, [], `round ${round}: no history`);
    }
    if (!databaseUrl) return;
    assert.deepEqual(await findInDatabase(databaseUrl, [text]), [], "no version of any raced message is left in the database");
  });

  it("records one deletion when the sender and an admin delete at the same moment", async () => {
    const [a, b, c] = await newUsers(server, 3, "delrace");
    const A = server.clientsFor(a!, "grpc");
    const B = server.clientsFor(b!, "connect");
    const conv = await createGroup(A, [b!, c!]);
    const feed = await openLiveFeed(server.clientsFor(c!, "grpc"), { label: "c" });
    feeds.push(feed);
    const seqs: bigint[] = [];
    for (let i = 0; i < 6; i++) seqs.push((await sendText(B, conv.id, `contested ${i}`)).seq);
    await Promise.all(seqs.flatMap((seq) => [remove(A, conv.id, seq), remove(B, conv.id, seq)]));
    const fence = await sendText(A, conv.id, "fence");
    await feed.waitForEvent(isMessage(conv.id, fence.seq), "the fence");
    const log = (await A.messages.listModerationLog({ conversationId: conv.id })).entries;
    for (const seq of seqs) {
      const tomb = await getMessage(A, conv.id, seq);
      const events = feed.events.filter((e) => e.kind.case === "messageDeleted" && e.kind.value.messageSeq === seq && e.conversationId === conv.id);
      assert.equal(events.length, 1, `seq ${seq}: exactly one message_deleted`);
      const ev = events[0]!.kind.case === "messageDeleted" ? events[0]!.kind.value : undefined;
      assert.equal(ev?.deletion?.deletedBy, tomb.deletion?.deletedBy, `seq ${seq}: the event and the tombstone agree on who deleted it`);
      const logged = log.filter((x) => x.messageSeq === seq);
      assert.equal(logged.length, tomb.deletion?.deletedBy === a ? 1 : 0, `seq ${seq}: in the moderation log exactly when the admin's delete won`);
      assert.equal(ev?.moderated, tomb.deletion?.deletedBy === a, `seq ${seq}: moderated exactly when the admin's delete won`);
    }
  });

  it("pages the moderation log newest first; a direct conversation has none", async () => {
    const [a, b, c] = await newUsers(server, 3, "modpages");
    const A = server.clientsFor(a!, "connect");
    const B = server.clientsFor(b!, "grpc");
    const conv = await createGroup(A, [b!, c!]);
    const seqs: bigint[] = [];
    for (let i = 0; i < 5; i++) seqs.push((await sendText(B, conv.id, `spam ${i}`)).seq);
    for (const seq of seqs) await remove(A, conv.id, seq);
    const pages = await walkPages(2, async (pageToken) => {
      const res = await A.messages.listModerationLog({ conversationId: conv.id, pageSize: 2, pageToken });
      return { items: res.entries, nextPageToken: res.nextPageToken };
    });
    assert.deepEqual(pages.flat().map((e) => e.messageSeq), [...seqs].reverse(), "every moderation once, newest first");
    const direct = await createDirect(A, b!);
    await expectCode(A.messages.listModerationLog({ conversationId: direct.id }), Code.PermissionDenied);
  });

  it("counts a direct conversation's unread messages without the deleted ones", async () => {
    const [a, b] = await newUsers(server, 2, "directunread");
    const A = server.clientsFor(a!, "grpc");
    const B = server.clientsFor(b!, "connect");
    const direct = await createDirect(A, b!);
    for (let i = 0; i < 3; i++) await sendText(A, direct.id, `dm ${i}`);
    await remove(A, direct.id, 2n);
    const listed = await listedConversation(B, direct.id);
    assert.equal(listed?.unreadCount, 2n);
    assert.equal(listed?.lastMessage?.seq, 3n);
  });

  it("takes no reactions on a deleted message", async () => {
    const [a, b, c] = await newUsers(server, 3, "delreact");
    const A = server.clientsFor(a!, "grpc");
    const conv = await createGroup(A, [b!, c!]);
    const m = await sendText(A, conv.id, "gone soon");
    await remove(A, conv.id, m.seq);
    await server.clientsFor(b!, "connect").messages.addReaction({ conversationId: conv.id, seq: m.seq, emoji: "😂" }).catch(() => undefined);
    assert.deepEqual((await getMessage(A, conv.id, m.seq)).reactions, [], "the tombstone still has no reactions");
  });

  it("deletes for everyone on every protocol: gRPC delete, Connect read", async () => {
    const [a, b, c] = await newUsers(server, 3, "crossproto");
    const conv = await createGroup(server.clientsFor(a!, "grpc"), [b!, c!]);
    const m = await sendText(server.clientsFor(b!, "connect"), conv.id, "cross");
    await remove(server.clientsFor(b!, "grpc"), conv.id, m.seq);
    const clients: Clients = server.clientsFor(c!, "connect");
    assertTombstone(await getMessage(clients, conv.id, m.seq), b!, "read over Connect");
  });
});
