/**
 * Issue 21, the inbox read path: however ListConversations, ListMessages and GetMessage are
 * answered (a leaner path for unary reads, less mapping per conversation), a user must see the
 * same inbox: unread and mention counts and last-message previews that follow sends, edits and
 * deletes at once, conversations ordered by newest activity across pages, and exactly the same
 * messages whichever protocol asks — gRPC (a connect-node client and an independent grpc-js
 * one), gRPC-Web, and Connect in binary, JSON and GET form.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { create, equals, fromBinary, toBinary, toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { ConversationType, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import {
  ListConversationsRequestSchema,
  ListConversationsResponseSchema,
} from "../../gen/parley/v1/conversation_service_pb.ts";
import {
  GetMessageRequestSchema,
  GetMessageResponseSchema,
  ListDirection,
  ListMessagesRequestSchema,
  ListMessagesResponseSchema,
} from "../../gen/parley/v1/message_service_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { clockPast, createDirect, createGroup, everyByte, listAllConversations, ms, sendText } from "../helpers/fixtures.ts";
import { newUsers, type Clients, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { postStory, sharedStoryServer } from "../stories/support.ts";
import { duplicatesOf } from "./support.ts";

/** Every protocol a client may read the inbox over. */
const READ_PROTOCOLS = ["grpc", "connect", "connect-json", "connect-get", "connect-h2", "grpc-web"] as const satisfies readonly Protocol[];

describe("the inbox read path (issue 21)", function () {
  this.timeout(30_000);
  let server: TestServer;
  before(async function () {
    this.timeout(60_000);
    // The story tests' shared node (one test posts a story): one node start less per run.
    server = await sharedStoryServer();
  });

  const send = async (c: Clients, conversationId: string, text: string, extra: { mentionUserIds?: string[]; mentionEveryone?: boolean; replyToSeq?: bigint } = {}) => {
    const res = await c.messages.sendMessage({ conversationId, clientMessageId: randomUUID(), content: { case: "text", value: text }, ...extra });
    return res.message!;
  };
  const edit = async (c: Clients, conversationId: string, seq: bigint, text: string) =>
    (await c.messages.editMessage({ conversationId, seq, content: { case: "text", value: text } })).message!;
  const remove = async (c: Clients, conversationId: string, seq: bigint) => (await c.messages.deleteMessage({ conversationId, seq })).message!;

  /** The conversation as ListConversations and GetConversation show it to the caller; asserts they agree. */
  async function seen(c: Clients, conversationId: string): Promise<Conversation> {
    const listed = (await listAllConversations(c)).find((x) => x.id === conversationId);
    assert.ok(listed, "the conversation is listed");
    const got = (await c.conversations.getConversation({ conversationId })).conversation!;
    assert.deepEqual(
      [got.unreadCount, got.unreadMentionCount, got.lastSeq, got.lastMessage?.seq, got.lastMessage?.content, ms(got.lastActivityAt)],
      [listed.unreadCount, listed.unreadMentionCount, listed.lastSeq, listed.lastMessage?.seq, listed.lastMessage?.content, ms(listed.lastActivityAt)],
      "GetConversation and ListConversations agree",
    );
    return listed;
  }

  for (const protocol of ["grpc", "connect"] as const) {
    describe(`over ${protocol}`, () => {
      const as = (id: string) => server.clientsFor(id, protocol);

      it("previews the last message as it is now: an edit shows the new text, a delete shows it deleted", async () => {
        const [a, b, c] = (await newUsers(server, 3, "ibprev")) as [string, string, string];
        const A = as(a);
        const B = as(b);
        const group = (await createGroup(A, [b, c])).id;
        const first = await send(A, group, "first words");
        const last = await send(A, group, "last words");
        let conv = await seen(B, group);
        assert.deepEqual([conv.lastSeq, conv.lastMessage?.seq, conv.lastMessage?.content], [last.seq, last.seq, { case: "text", value: "last words" }]);
        const activity = ms(conv.lastActivityAt);
        assert.equal(activity, ms(last.createdAt), "activity is the last send");

        await edit(A, group, last.seq, "last words, edited");
        conv = await seen(B, group);
        assert.deepEqual(conv.lastMessage?.content, { case: "text", value: "last words, edited" }, "the preview of an edited last message is its new text");
        assert.equal(conv.lastMessage?.seq, last.seq);
        assert.equal(conv.lastMessage?.senderId, a);

        await edit(A, group, first.seq, "first words, edited");
        conv = await seen(B, group);
        assert.deepEqual(conv.lastMessage?.content, { case: "text", value: "last words, edited" }, "editing an earlier message leaves the preview");
        assert.equal(ms(conv.lastActivityAt), activity, "edits are not activity");

        await remove(A, group, first.seq);
        conv = await seen(B, group);
        assert.deepEqual(conv.lastMessage?.content, { case: "text", value: "last words, edited" }, "deleting an earlier message leaves the preview");

        await remove(A, group, last.seq);
        conv = await seen(B, group);
        assert.equal(conv.lastSeq, last.seq, "the tombstone keeps its seq: last_seq stays");
        assert.equal(conv.lastMessage?.seq, last.seq, "the preview is still the newest message, now a tombstone");
        assert.deepEqual(conv.lastMessage?.content, { case: "deleted", value: true }, "the preview says deleted, without text");
        assert.equal(ms(conv.lastActivityAt), activity, "a delete is not activity");

        const next = await send(as(c), group, "after the delete");
        conv = await seen(B, group);
        assert.deepEqual([conv.lastMessage?.seq, conv.lastMessage?.senderId, conv.lastMessage?.content], [next.seq, c, { case: "text", value: "after the delete" }]);
      });

      it("counts unread messages and mentions through sends, edits, deletes and MarkRead", async () => {
        const [a, b, c] = (await newUsers(server, 3, "ibcount")) as [string, string, string];
        const A = as(a);
        const B = as(b);
        const C = as(c);
        const group = (await createGroup(A, [b, c])).id;
        const m1 = await send(A, group, "hello");
        const m2 = await send(A, group, "hey b", { mentionUserIds: [b] });
        await send(B, group, "my own message is never unread", { mentionUserIds: [b] });
        const m4 = await send(C, group, "c mentions b", { mentionUserIds: [b, a] });
        const m5 = await send(A, group, "everyone!", { mentionEveryone: true });
        const m6 = await send(C, group, "plain from c");
        let conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [5n, 3n], "five from others, three of them mention b");
        const forA = await seen(A, group);
        assert.deepEqual([forA.unreadCount, forA.unreadMentionCount], [3n, 1n], "a: b's and c's three, c's mentions a");

        await edit(A, group, m2.seq, "hey b, edited");
        await edit(C, group, m6.seq, "plain from c, edited");
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [5n, 3n], "edits change no count");

        await remove(C, group, m4.seq);
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [4n, 2n], "a deleted unread mention counts no more");

        await B.conversations.markRead({ conversationId: group, seq: m2.seq });
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [2n, 1n], "after reading up to m2: m5 (everyone) and m6");
        assert.equal(conv.myLastReadSeq, m2.seq);

        await remove(A, group, m1.seq); // already read: nothing to subtract
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [2n, 1n], "deleting a read message changes no count");

        await remove(A, group, m5.seq);
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [1n, 0n], "deleting the unread everyone-mention");

        const m7 = await send(A, group, "again @b", { mentionUserIds: [b] });
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [2n, 1n]);
        await B.conversations.markRead({ conversationId: group, seq: m7.seq });
        conv = await seen(B, group);
        assert.deepEqual([conv.unreadCount, conv.unreadMentionCount], [0n, 0n], "all read");
      });

      it("orders conversations by newest activity across pages, and a new message moves one to the top", async () => {
        const [me, ...others] = (await newUsers(server, 7, "iborder")) as string[];
        const Me = as(me!);
        const convs: string[] = [];
        for (let i = 0; i < 6; i++) {
          const id = i % 2 ? (await createDirect(as(others[i]!), me!)).id : (await createGroup(as(others[i]!), [me!, others[(i + 1) % 6]!])).id;
          convs.push(id);
        }
        // Activity in a known order: each conversation's last message strictly later than the previous one's.
        let last: Message | undefined;
        for (const [i, id] of [...convs.entries()].reverse()) {
          if (last) await clockPast(last.createdAt);
          last = await sendText(as(others[i]!), id, `message ${i}`);
        }
        const mine = (list: Conversation[]) => list.map((c) => c.id).filter((id) => convs.includes(id));
        const expected = [...convs];
        for (const pageSize of [1, 2, 4, 100]) {
          const listed = await listAllConversations(Me, pageSize);
          assert.deepEqual(duplicatesOf(listed.map((c) => c.id)), [], `no conversation twice (page_size ${pageSize})`);
          assert.deepEqual(mine(listed), expected, `newest activity first (page_size ${pageSize})`);
          for (let i = 1; i < listed.length; i++) assert.ok(ms(listed[i]!.lastActivityAt) <= ms(listed[i - 1]!.lastActivityAt));
        }
        // The oldest conversation gets a message; an edit and a delete elsewhere move nothing.
        await clockPast(last!.createdAt);
        const moved = await sendText(as(others[5]!), convs[5]!, "back on top");
        await edit(as(others[4]!), convs[4]!, 1n, "edited, not new");
        await remove(as(others[3]!), convs[3]!, 1n);
        const after = await listAllConversations(Me, 2);
        assert.deepEqual(mine(after), [convs[5], ...convs.slice(0, 5)], "the conversation with the new message comes first");
        assert.equal(ms(after.find((c) => c.id === convs[5])!.lastActivityAt), ms(moved.createdAt));
        assert.deepEqual(after.find((c) => c.id === convs[3])!.lastMessage?.content, { case: "deleted", value: true });
        assert.deepEqual(after.find((c) => c.id === convs[4])!.lastMessage?.content, { case: "text", value: "edited, not new" });
      });
    });
  }

  describe("the same answers over every protocol", () => {
    let reader: string;
    let group: string;
    let direct: string;
    let encrypted: string;
    let tokenOfReader: string;

    before(async function () {
      this.timeout(30_000);
      const [a, b, c] = (await newUsers(server, 3, "ibproto")) as [string, string, string];
      reader = b;
      tokenOfReader = await server.tokenFor(b);
      const A = server.clientsFor(a, "grpc");
      const B = server.clientsFor(b, "connect");
      const C = server.clientsFor(c, "connect");
      group = (await createGroup(A, [b, c])).id;
      // Every kind of message the mapping has to get right.
      const t1 = await send(A, group, "plain text, with émoji 🎉, a \u200d joiner and a tab\there");
      await send(C, group, "a reply", { replyToSeq: t1.seq, mentionUserIds: [b] });
      await send(A, group, "to everyone", { mentionEveryone: true });
      await A.messages.sendMessage({
        conversationId: group,
        clientMessageId: randomUUID(),
        content: { case: "envelope", value: { ciphertext: everyByte(200), nonce: everyByte(0).slice(0, 24), algorithm: "x25519-xsalsa20-poly1305", keyId: "bundle:1", keyEpoch: 4_294_967_295 } },
      });
      const edited = await send(C, group, "before the edit");
      await edit(C, group, edited.seq, "after the edit");
      const gone = await send(A, group, "soon deleted");
      await send(C, group, "replying to what will be deleted", { replyToSeq: gone.seq });
      await remove(A, group, gone.seq);
      for (const emoji of ["👍", "🎉"]) await B.messages.addReaction({ conversationId: group, seq: t1.seq, emoji });
      await C.messages.addReaction({ conversationId: group, seq: t1.seq, emoji: "👍" });
      for (let i = 0; i < 12; i++) await send(i % 2 ? A : C, group, `filler ${i}`);
      await B.conversations.markRead({ conversationId: group, seq: 5n });
      // A description and a retention (a Duration) on the group, and an encrypted group with
      // blind search whose preview is an envelope: every field of a listed conversation is set somewhere.
      await A.conversations.updateConversation({ conversationId: group, description: "read paths", messageRetention: { seconds: 86_400n * 30n } });
      const sealed = (
        await A.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [b, c], name: "sealed", encrypted: true, blindSearch: true })
      ).conversation!;
      encrypted = sealed.id;
      await A.messages.sendMessage({
        conversationId: sealed.id,
        clientMessageId: randomUUID(),
        content: { case: "envelope", value: { ciphertext: everyByte(32), nonce: everyByte(0).slice(0, 24), algorithm: "test", keyId: "k", keyEpoch: sealed.keyEpoch } },
        mentionUserIds: [b],
      });
      // A story reply: a DIRECT conversation with a story reference.
      const story = await postStory(A, StoryPrivacy.PUBLIC);
      direct = (await B.stories.replyToStory({ storyId: story.id, clientMessageId: randomUUID(), content: { case: "text", value: "nice story" } })).message!.conversationId;
    });

    /** A unary call over grpc-js with the request and response as raw protobuf bytes. */
    function grpcJsCall<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, request: MessageShape<I>): Promise<MessageShape<O>> {
      const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${tokenOfReader}`);
      return new Promise<MessageShape<O>>((resolve, reject) => {
        client.makeUnaryRequest(
          path,
          (req: MessageShape<I>) => Buffer.from(toBinary(input, req)),
          (bytes: Buffer) => fromBinary(output, bytes),
          request,
          metadata,
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res!)),
        );
      }).finally(() => client.close());
    }

    /** Asserts that every protocol's answer equals the first one's; names the first that differs. */
    function assertSame<T extends DescMessage>(schema: T, answers: [string, MessageShape<T>][], what: string): void {
      const [[firstName, first]] = answers as [[string, MessageShape<T>]];
      for (const [name, answer] of answers.slice(1)) {
        if (!equals(schema, first, answer)) {
          assert.equal(toJsonString(schema, answer, { prettySpaces: 1 }), toJsonString(schema, first, { prettySpaces: 1 }), `${what}: ${name} differs from ${firstName}`);
          assert.fail(`${what}: ${name} differs from ${firstName} in a way JSON does not show`);
        }
      }
    }

    it("lists the same messages, page by page in both directions, over every protocol and grpc-js", async () => {
      for (const conversationId of [group, direct, encrypted]) {
        for (const direction of [ListDirection.BACKWARD, ListDirection.FORWARD]) {
          let token = "";
          for (let page = 0; page < 20; page++) {
            const request = create(ListMessagesRequestSchema, { conversationId, pageSize: 4, pageToken: token, direction });
            const answers: [string, MessageShape<typeof ListMessagesResponseSchema>][] = [];
            for (const protocol of READ_PROTOCOLS) answers.push([protocol, await server.clientsFor(reader, protocol).messages.listMessages(request)]);
            answers.push(["grpc-js", await grpcJsCall("/parley.v1.MessageService/ListMessages", ListMessagesRequestSchema, ListMessagesResponseSchema, request)]);
            assertSame(ListMessagesResponseSchema, answers, `ListMessages page ${page + 1} (${direction === ListDirection.BACKWARD ? "BACKWARD" : "FORWARD"})`);
            assert.ok(answers[0]![1].messages.length <= 4);
            token = answers[0]![1].nextPageToken;
            if (!token) break;
          }
          assert.equal(token, "", "the walk ends");
        }
      }
    });

    it("returns the same message from GetMessage over every protocol and grpc-js, equal to the listed one", async () => {
      const listed = (await server.clientsFor(reader, "connect").messages.listMessages({ conversationId: group, pageSize: 200, direction: ListDirection.FORWARD })).messages;
      assert.equal(listed.length, 19, "every message of the group, the tombstone included");
      for (const m of listed) {
        const request = create(GetMessageRequestSchema, { conversationId: group, seq: m.seq });
        const answers: [string, MessageShape<typeof GetMessageResponseSchema>][] = [];
        for (const protocol of READ_PROTOCOLS) answers.push([protocol, await server.clientsFor(reader, protocol).messages.getMessage(request)]);
        answers.push(["grpc-js", await grpcJsCall("/parley.v1.MessageService/GetMessage", GetMessageRequestSchema, GetMessageResponseSchema, request)]);
        answers.push(["ListMessages", create(GetMessageResponseSchema, { message: m })]);
        assertSame(GetMessageResponseSchema, answers, `GetMessage seq ${m.seq}`);
      }
    });

    it("lists the same conversations over every protocol and grpc-js", async () => {
      const request = create(ListConversationsRequestSchema, { pageSize: 100 });
      const answers: [string, MessageShape<typeof ListConversationsResponseSchema>][] = [];
      for (const protocol of READ_PROTOCOLS) answers.push([protocol, await server.clientsFor(reader, protocol).conversations.listConversations(request)]);
      answers.push(["grpc-js", await grpcJsCall("/parley.v1.ConversationService/ListConversations", ListConversationsRequestSchema, ListConversationsResponseSchema, request)]);
      assertSame(ListConversationsResponseSchema, answers, "ListConversations");
      const mine = answers[0]![1].conversations;
      assert.deepEqual(mine.map((c) => c.id).sort(), [group, direct, encrypted].sort());
      const sealed = mine.find((c) => c.id === encrypted)!;
      assert.deepEqual([sealed.encrypted, sealed.blindSearch, sealed.lastMessage?.content, sealed.unreadMentionCount], [true, true, { case: "encrypted", value: true }, 1n]);
      assert.equal(mine.find((c) => c.id === group)!.messageRetention?.seconds, 86_400n * 30n);
    });
  });
});
