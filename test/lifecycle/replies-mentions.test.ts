/**
 * Replies and mentions (issue 5, "Replies", "Mentions"): a reply names a message of the same
 * conversation and reads show a short preview of it (or that it was deleted); mentions travel
 * beside the content, so they also work when the content is encrypted.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message, MessagePreview } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllForward, ms, sendText } from "../helpers/fixtures.ts";
import { isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { edit, getMessage, remove, send, textOf } from "./support/messages.ts";
import { listedConversation } from "./support/pages.ts";
import { newConversationKey, open, seal } from "./support/sealed.ts";

function previewText(p: MessagePreview | undefined): string {
  return p?.content.case === "text" ? p.content.value : `(${p?.content.case ?? "no preview"})`;
}

describe("Replies", () => {
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
      it("rejects reply_to_seq that names no message of this conversation (INVALID_ARGUMENT) and stores nothing", async () => {
        const [a, b, c] = await newUsers(server, 3, "replyother");
        const A = server.clientsFor(a!, protocol);
        const here = await createGroup(A, [b!, c!], "here");
        const elsewhere = await createGroup(A, [b!, c!], "elsewhere");
        for (let i = 0; i < 5; i++) await sendText(A, elsewhere.id, `elsewhere ${i}`);
        await sendText(A, here.id, "only message here");
        // Seq 5 exists, but in the other conversation.
        for (const seq of [5n, 2n, 0n, -1n]) {
          await expectInvalidArgument(send(A, here.id, { body: "reply", replyToSeq: seq }), "reply_to_seq");
        }
        const history = await listAllForward(A, here.id);
        assert.deepEqual(history.map((m) => m.seq), [1n], "the rejected replies stored nothing");
        assert.equal((await sendText(A, here.id, "next")).seq, 2n, "and used up no seq");
      });

      it("shows a preview of the replied-to message on send, get, list and the feed", async () => {
        const [a, b, c] = await newUsers(server, 3, "replypreview");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fc = await openLiveFeed(server.clientsFor(c!, protocol), { label: `c/${protocol}` });
        feeds.push(fc);
        const question = await sendText(A, conv.id, "Who brings the tent?");
        const answer = await send(B, conv.id, { body: "I do", replyToSeq: question.seq });

        const check = (m: Message | undefined, where: string) => {
          assert.equal(m?.replyToSeq, question.seq, `${where}: reply_to_seq`);
          assert.equal(m?.replyTo?.seq, question.seq, `${where}: preview seq`);
          assert.equal(m?.replyTo?.senderId, a, `${where}: preview sender`);
          assert.equal(ms(m?.replyTo?.createdAt), ms(question.createdAt), `${where}: preview time`);
          assert.equal(previewText(m?.replyTo), "Who brings the tent?", `${where}: preview text`);
        };
        check(answer, "SendMessage");
        check(await getMessage(server.clientsFor(c!, protocol), conv.id, answer.seq), "GetMessage");
        check((await listAllForward(A, conv.id)).find((m) => m.seq === answer.seq), "ListMessages");
        const { event } = await fc.waitForEvent(isMessage(conv.id, answer.seq), "the reply on the feed");
        check(event.kind.case === "messageCreated" ? event.kind.value.message : undefined, "message_created");
        assert.equal((await getMessage(A, conv.id, question.seq)).replyTo, undefined, "a message that replies to nothing has no preview");
      });

      it("previews a long message by its first characters and the latest edit", async () => {
        const [a, b, c] = await newUsers(server, 3, "replylong");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const long = "Packing list: tent, stove, two sleeping bags, headlamps, water filter. ".repeat(40);
        const original = await sendText(A, conv.id, long);
        const reply = await send(server.clientsFor(b!, protocol), conv.id, { body: "ok", replyToSeq: original.seq });
        const shown = previewText(reply.replyTo);
        assert.ok(shown.length > 0 && shown.length < long.length, `a short preview (${shown.length} characters)`);
        assert.ok(long.startsWith(shown), "the preview is the start of the message");

        await edit(A, conv.id, original.seq, "Packing list: see the shared doc");
        const after = await getMessage(A, conv.id, reply.seq);
        assert.equal(previewText(after.replyTo), "Packing list: see the shared doc", "the preview shows the message as it is now");
      });

      it("says the replied-to message was deleted once it is, without its text", async () => {
        const [a, b, c] = await newUsers(server, 3, "replydel");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const original = await sendText(A, conv.id, "regrettable words");
        const reply = await send(B, conv.id, { body: "wow", replyToSeq: original.seq });
        await remove(A, conv.id, original.seq);
        for (const m of [await getMessage(B, conv.id, reply.seq), (await listAllForward(B, conv.id)).find((x) => x.seq === reply.seq)]) {
          assert.equal(m?.replyToSeq, original.seq, "the reply still names the seq");
          assert.deepEqual(m?.replyTo?.content, { case: "deleted", value: true }, "the preview says deleted");
          assert.equal(textOf(m), "wow", "the reply itself is intact");
        }
      });

      it("previews an encrypted message as encrypted, without its bytes", async () => {
        const [a, b, c] = await newUsers(server, 3, "replysealed");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const key = newConversationKey();
        const original = await send(A, conv.id, { body: seal(key, "sealed question") });
        const reply = await send(server.clientsFor(b!, protocol), conv.id, { body: seal(key, "sealed answer"), replyToSeq: original.seq });
        assert.deepEqual(reply.replyTo?.content, { case: "encrypted", value: true });
        assert.equal(open(key, reply.content.case === "envelope" ? reply.content.value : undefined), "sealed answer");
      });
    });
  }
});

describe("Mentions", () => {
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
      it("carries the mentioned members beside the content, on every read and on the feed", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "mention");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!, d!]);
        const fd = await openLiveFeed(server.clientsFor(d!, protocol), { label: `d/${protocol}` });
        feeds.push(fd);
        const m = await send(A, conv.id, { body: "hey both", mentionUserIds: [c!, b!, c!] });
        const expected = [b!, c!].sort();
        assert.deepEqual([...m.mentionedUserIds].sort(), expected, "SendMessage: each mentioned member once");
        assert.equal(m.mentionsEveryone, false);
        assert.deepEqual([...(await getMessage(server.clientsFor(d!, protocol), conv.id, m.seq)).mentionedUserIds].sort(), expected, "GetMessage");
        const { event } = await fd.waitForEvent(isMessage(conv.id, m.seq), "the message on the feed");
        assert.deepEqual([...(event.kind.case === "messageCreated" ? event.kind.value.message?.mentionedUserIds ?? [] : [])].sort(), expected, "message_created");
      });

      it("rejects a mention of someone who is not a member (INVALID_ARGUMENT naming the field) and stores nothing", async () => {
        const [a, b, c, stranger, leaver] = await newUsers(server, 5, "mentionbad");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!, leaver!]);
        await server.clientsFor(leaver!, protocol).conversations.removeMember({ conversationId: conv.id, userId: leaver! });
        for (const who of [stranger!, leaver!, "nobody-at-all"]) {
          await expectInvalidArgument(send(A, conv.id, { body: `hi ${who}`, mentionUserIds: [b!, who] }), "mention_user_ids");
        }
        assert.deepEqual(await listAllForward(A, conv.id), [], "nothing was stored");
        assert.equal((await send(A, conv.id, { body: "fine", mentionUserIds: [b!] })).seq, 1n, "no seq was used up");
      });

      it("lets only group admins mention everyone: PERMISSION_DENIED for members, INVALID_ARGUMENT in a direct conversation", async () => {
        const [a, b, c] = await newUsers(server, 3, "everyone");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        await expectCode(send(B, conv.id, { body: "@everyone party", mentionEveryone: true }), Code.PermissionDenied);
        assert.deepEqual(await listAllForward(A, conv.id), [], "the refused message was not stored");

        const byAdmin = await send(A, conv.id, { body: "@everyone meeting at 5", mentionEveryone: true });
        assert.equal(byAdmin.mentionsEveryone, true);
        await A.conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.ADMIN });
        assert.equal((await send(B, conv.id, { body: "@everyone now I can", mentionEveryone: true })).mentionsEveryone, true, "a promoted member can");

        const direct = await createDirect(A, b!);
        await expectInvalidArgument(send(A, direct.id, { body: "@everyone?", mentionEveryone: true }), "mention_everyone");
      });

      it("keeps mentions of an encrypted message readable beside the envelope, and counts them for the mentioned", async () => {
        const [a, b, c] = await newUsers(server, 3, "mentionsealed");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const key = newConversationKey();
        const m = await send(A, conv.id, { body: seal(key, "@b can you check this?"), mentionUserIds: [b!] });
        const got = await getMessage(B, conv.id, m.seq);
        assert.deepEqual(got.mentionedUserIds, [b], "the mention is readable though the content is not");
        assert.equal(open(key, got.content.case === "envelope" ? got.content.value : undefined), "@b can you check this?");
        const forB = (await listedConversation(B, conv.id))!;
        assert.equal(forB.unreadMentionCount, 1n, "b has one unread mention");
        const forC = (await listedConversation(server.clientsFor(c!, protocol), conv.id))!;
        assert.equal(forC.unreadMentionCount, 0n, "c was not mentioned");
        assert.equal(forC.unreadCount, 1n);
      });

      it("lets a sender mention themselves without counting it as an unread mention", async () => {
        const [a, b, c] = await newUsers(server, 3, "selfmention");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await send(A, conv.id, { body: "note to self", mentionUserIds: [a!] });
        assert.deepEqual(m.mentionedUserIds, [a]);
        const mine = (await listedConversation(A, conv.id))!;
        assert.equal(mine.unreadMentionCount, 0n);
        assert.equal(mine.unreadCount, 0n);
      });
    });
  }
});
