/**
 * Editing (issue 5, "Edit"): the sender replaces a message's content; the version and
 * edited_at say that it happened, members can read every earlier version with its times, and
 * nothing else about the message (its seq, who has read it) moves.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { clockPast, createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { assertStoredEvent, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { edit, getMessage, remove, send, textOf } from "./support/messages.ts";
import { listedConversation, walkPages } from "./support/pages.ts";
import { newConversationKey, open, seal } from "./support/sealed.ts";

describe("EditMessage and ListMessageEdits", () => {
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
      it("bumps version and edited_at, keeps the seq, and lists the earlier versions oldest first with their times", async () => {
        const [a, b, c] = await newUsers(server, 3, "edit");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        await sendText(A, conv.id, "before");
        const original = await sendText(A, conv.id, "See you at 8");
        assert.equal(original.version, 1, "a new message is version 1");
        assert.equal(original.editedAt, undefined, "a new message was never edited");

        await clockPast(original.createdAt);
        const second = await edit(A, conv.id, original.seq, "See you at 9");
        assert.equal(second.version, 2, "the first edit makes version 2");
        assert.equal(second.seq, original.seq, "an edit keeps the seq");
        assert.equal(second.id, original.id, "an edit keeps the id");
        assert.equal(textOf(second), "See you at 9");
        assert.ok(ms(second.editedAt) > ms(original.createdAt), "edited_at is after the send");
        assert.equal(ms(second.createdAt), ms(original.createdAt), "created_at stays the send time");

        await clockPast(second.editedAt);
        const third = await edit(A, conv.id, original.seq, "See you at 9:30");
        assert.equal(third.version, 3, "the second edit makes version 3");
        assert.ok(ms(third.editedAt) > ms(second.editedAt), "edited_at moves with every edit");

        const B = server.clientsFor(b!, protocol);
        const seen = await getMessage(B, conv.id, original.seq);
        assert.equal(textOf(seen), "See you at 9:30", "members read the newest version");
        assert.equal(seen.version, 3);
        assert.equal(ms(seen.editedAt), ms(third.editedAt));

        const { edits } = await B.messages.listMessageEdits({ conversationId: conv.id, seq: original.seq });
        assert.deepEqual(
          edits.map((e) => [e.version, e.content.case === "text" ? e.content.value : e.content.case]),
          [[1, "See you at 8"], [2, "See you at 9"]],
          "the earlier versions, oldest first",
        );
        assert.equal(ms(edits[0]!.createdAt), ms(original.createdAt), "version 1 was written when the message was sent");
        assert.equal(ms(edits[0]!.replacedAt), ms(second.editedAt), "version 1 was replaced by the first edit");
        assert.equal(ms(edits[1]!.createdAt), ms(second.editedAt), "version 2 was written by the first edit");
        assert.equal(ms(edits[1]!.replacedAt), ms(third.editedAt), "version 2 was replaced by the second edit");

        const next = await sendText(A, conv.id, "after the edits");
        assert.equal(next.seq, original.seq + 1n, "edits use up no seq");
      });

      it("shows the edit history to members only: NOT_FOUND to anyone else", async () => {
        const [a, b, c, outsider] = await newUsers(server, 4, "edithist");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "secret plan v1");
        await edit(A, conv.id, m.seq, "secret plan v2");
        const O = server.clientsFor(outsider!, protocol);
        await expectCode(O.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq }), Code.NotFound);
        await expectCode(O.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "hijack" } }), Code.NotFound);

        // A member who left is an outsider again.
        const C = server.clientsFor(c!, protocol);
        assert.equal((await C.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq })).edits.length, 1);
        await C.conversations.removeMember({ conversationId: conv.id, userId: c! });
        await expectCode(C.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq }), Code.NotFound);

        // A seq that does not exist is NOT_FOUND for members too.
        await expectCode(A.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq + 5n }), Code.NotFound);
        await expectCode(A.messages.editMessage({ conversationId: conv.id, seq: m.seq + 5n, content: { case: "text", value: "x" } }), Code.NotFound);
      });

      it("lets only the sender edit: PERMISSION_DENIED for other members, admins included, and nothing changes", async () => {
        const [a, b, c] = await newUsers(server, 3, "editperm");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const B = server.clientsFor(b!, protocol);
        const fromB = await sendText(B, conv.id, "written by b");
        await expectCode(A.messages.editMessage({ conversationId: conv.id, seq: fromB.seq, content: { case: "text", value: "admin rewrite" } }), Code.PermissionDenied);
        await A.conversations.setMemberRole({ conversationId: conv.id, userId: c!, role: MemberRole.ADMIN });
        const C = server.clientsFor(c!, protocol);
        await expectCode(C.messages.editMessage({ conversationId: conv.id, seq: fromB.seq, content: { case: "text", value: "other admin rewrite" } }), Code.PermissionDenied);
        const after = await getMessage(C, conv.id, fromB.seq);
        assert.equal(textOf(after), "written by b", "the content is untouched");
        assert.equal(after.version, 1, "the version is untouched");
        assert.equal(after.editedAt, undefined, "edited_at is still unset");
        assert.deepEqual((await C.messages.listMessageEdits({ conversationId: conv.id, seq: fromB.seq })).edits, [], "no history was written");
      });

      it("refuses to edit a deleted message with FAILED_PRECONDITION", async () => {
        const [a, b, c] = await newUsers(server, 3, "editdel");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "soon gone");
        await remove(A, conv.id, m.seq);
        await expectCode(A.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "back again" } }), Code.FailedPrecondition);
        const tomb = await getMessage(A, conv.id, m.seq);
        assert.ok(tomb.deletion, "still a tombstone");
        assert.equal(tomb.content.case, undefined, "still without content");
      });

      it("rejects blank or oversized text with INVALID_ARGUMENT and keeps the message as it was", async () => {
        const [a, b, c] = await newUsers(server, 3, "editblank");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "keep me");
        await expectInvalidArgument(A.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "   " } }), "text", "content");
        await expectInvalidArgument(A.messages.editMessage({ conversationId: conv.id, seq: m.seq }), "text", "content");
        // The same size limit as a send: 16,386 bytes is over 16 KiB.
        await expectInvalidArgument(A.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "é".repeat(8193) } }), "text", "content");
        const after = await getMessage(A, conv.id, m.seq);
        assert.equal(textOf(after), "keep me");
        assert.equal(after.version, 1);
      });

      it("never makes an edited message unread again, for those who read it and those who did not", async () => {
        const [a, b, c] = await newUsers(server, 3, "editread");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const C = server.clientsFor(c!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m1 = await sendText(A, conv.id, "one");
        const m2 = await sendText(A, conv.id, "two");
        await B.conversations.markRead({ conversationId: conv.id, seq: m2.seq });

        await edit(A, conv.id, m1.seq, "one, edited");
        await edit(A, conv.id, m2.seq, "two, edited");
        await edit(A, conv.id, m2.seq, "two, edited again");

        const counts = async (clients: typeof B) => {
          const listed = (await listedConversation(clients, conv.id))!;
          return { unread: listed.unreadCount, lastRead: listed.myLastReadSeq, lastSeq: listed.lastSeq };
        };
        assert.deepEqual(await counts(B), { unread: 0n, lastRead: 2n, lastSeq: 2n }, "b read both: still nothing unread after the edits");
        assert.deepEqual(await counts(C), { unread: 2n, lastRead: 0n, lastSeq: 2n }, "c read nothing: still exactly two unread");
        assert.deepEqual(await counts(A), { unread: 0n, lastRead: 0n, lastSeq: 2n }, "the sender's own edits are never unread");
      });

      it("sends message_edited with the new version to every member's feed", async () => {
        const [a, b, c] = await newUsers(server, 3, "editevt");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "typo hree");
        const fb = await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/${protocol}` });
        const fa = await openLiveFeed(server.clientsFor(a!, protocol), { label: `a/${protocol}` });
        feeds.push(fb, fa);
        await edit(A, conv.id, m.seq, "typo here");
        await edit(A, conv.id, m.seq, "no typo here");
        const isEdit = (version: number) => (e: Event) =>
          e.conversationId === conv.id && e.kind.case === "messageEdited" && e.kind.value.message?.version === version;
        for (const feed of [fb, fa]) {
          const { event, index } = await feed.waitForEvent(isEdit(2), "message_edited version 2");
          assertStoredEvent(event, conv.id, a);
          const edited = event.kind.case === "messageEdited" ? event.kind.value.message : undefined;
          assert.equal(edited?.seq, m.seq, "the event names the seq");
          assert.equal(edited?.id, m.id, "the event names the message");
          assert.equal(textOf(edited), "typo here", "the event carries the new content");
          assert.ok(edited?.editedAt, "the event carries edited_at");
          const later = await feed.waitForEvent(isEdit(3), "message_edited version 3");
          assert.ok(later.index > index, "edits arrive in order");
          assert.equal(textOf(later.event.kind.case === "messageEdited" ? later.event.kind.value.message : undefined), "no typo here");
        }
      });

      it("edits an encrypted message with a new envelope that members open, keeping the old envelope in the history", async () => {
        const [a, b, c] = await newUsers(server, 3, "editsealed");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const key = newConversationKey();
        const firstEnvelope = seal(key, "meet at the north gate");
        const m = await send(A, conv.id, { body: firstEnvelope });
        const secondEnvelope = seal(key, "meet at the south gate");
        const edited = await edit(A, conv.id, m.seq, secondEnvelope);
        assert.equal(edited.version, 2);

        const got = await getMessage(B, conv.id, m.seq);
        assert.equal(got.content.case, "envelope");
        assert.equal(open(key, got.content.case === "envelope" ? got.content.value : undefined), "meet at the south gate");
        assert.deepEqual(got.content.case === "envelope" ? got.content.value.nonce : undefined, secondEnvelope.nonce, "the new nonce, byte for byte");

        const { edits } = await B.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq });
        assert.equal(edits.length, 1);
        const old = edits[0]!;
        assert.equal(old.version, 1);
        assert.equal(old.content.case, "envelope");
        const oldEnvelope = old.content.case === "envelope" ? old.content.value : undefined;
        assert.equal(open(key, oldEnvelope), "meet at the north gate", "the original envelope still opens");
        assert.deepEqual(oldEnvelope?.ciphertext, firstEnvelope.ciphertext, "the original ciphertext, byte for byte");
        assert.equal(oldEnvelope?.keyId, key.id);

        // The kind of content cannot change with an edit.
        await expectInvalidArgument(A.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "now in clear" } }), "text", "content", "envelope");
        const plain = await sendText(A, conv.id, "plain");
        await expectInvalidArgument(A.messages.editMessage({ conversationId: conv.id, seq: plain.seq, content: { case: "envelope", value: seal(key, "now sealed") } }), "text", "content", "envelope");
        assert.equal((await getMessage(B, conv.id, m.seq)).version, 2, "the rejected edit changed nothing");
      });

      it("pages through a long edit history oldest first without repeating a version", async () => {
        const [a, b, c] = await newUsers(server, 3, "editpages");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "draft 1");
        for (let v = 2; v <= 6; v++) await edit(A, conv.id, m.seq, `draft ${v}`);
        const B = server.clientsFor(b!, protocol);
        const edits = (
          await walkPages(2, async (pageToken) => {
            const res = await B.messages.listMessageEdits({ conversationId: conv.id, seq: m.seq, pageSize: 2, pageToken });
            return { items: res.edits, nextPageToken: res.nextPageToken };
          })
        ).flat();
        assert.deepEqual(edits.map((e) => e.version), [1, 2, 3, 4, 5], "every earlier version once, oldest first");
        assert.deepEqual(edits.map((e) => (e.content.case === "text" ? e.content.value : "")), ["draft 1", "draft 2", "draft 3", "draft 4", "draft 5"]);
        assert.equal(textOf(await getMessage(B, conv.id, m.seq)), "draft 6");
      });

      it("shows the edited text in the conversation list's last-message preview", async () => {
        const [a, b, c] = await newUsers(server, 3, "editpreview");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "Dinner at 7?");
        await edit(A, conv.id, m.seq, "Dinner at 8?");
        const listed = await listedConversation(server.clientsFor(b!, protocol), conv.id);
        assert.equal(listed?.lastMessage?.seq, m.seq);
        assert.deepEqual(listed?.lastMessage?.content, { case: "text", value: "Dinner at 8?" }, "the preview is the message as it is now");
      });

      it("keeps the mentions of a message through an edit", async () => {
        const [a, b, c] = await newUsers(server, 3, "editmention");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await send(A, conv.id, { body: "@b look", mentionUserIds: [b!] });
        const edited = await edit(A, conv.id, m.seq, "@b look at this");
        assert.deepEqual(edited.mentionedUserIds, [b], "the mentions are unchanged");
        assert.deepEqual((await getMessage(server.clientsFor(c!, protocol), conv.id, m.seq)).mentionedUserIds, [b]);
      });
    });
  }
});
