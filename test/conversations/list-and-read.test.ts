import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { clockPast, createDirect, createGroup, listAllConversations, ms, sendText } from "../helpers/fixtures.ts";

describe("ListConversations", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("lists the caller's conversations, most recent activity first", async () => {
        const [me, b, c] = await newUsers(server, 3, "order");
        const clients = server.clientsFor(me!, protocol);
        const first = await createGroup(clients, [b!, c!], "first");
        await clockPast(first.createdAt);
        const second = await createGroup(clients, [b!, c!], "second");
        await clockPast(second.createdAt);
        const third = await createDirect(clients, b!);

        const byCreation = await clients.conversations.listConversations({});
        assert.deepEqual(byCreation.conversations.map((x) => x.id), [third.id, second.id, first.id]);

        await clockPast(third.createdAt);
        const m = await sendText(server.clientsFor(c!, protocol), first.id, "bump");
        const afterSend = await clients.conversations.listConversations({});
        assert.deepEqual(afterSend.conversations.map((x) => x.id), [first.id, third.id, second.id]);
        const bumped = afterSend.conversations[0]!;
        assert.equal(ms(bumped.lastActivityAt), ms(m.createdAt), "last_activity_at is the last message's time");
        for (let i = 1; i < afterSend.conversations.length; i++) {
          assert.ok(
            ms(afterSend.conversations[i - 1]!.lastActivityAt) >= ms(afterSend.conversations[i]!.lastActivityAt),
            "sorted by last_activity_at, newest first",
          );
        }
      });

      it("shows member count, last message preview and the peer of a DIRECT conversation", async () => {
        const [me, b, c, d] = await newUsers(server, 4, "preview");
        const clients = server.clientsFor(me!, protocol);
        const group = await createGroup(clients, [b!, c!, d!], "four");
        const direct = await createDirect(clients, b!);
        await sendText(clients, group.id, "first words");
        await sendText(server.clientsFor(d!, protocol), group.id, "latest words");
        await clients.messages.sendMessage({
          conversationId: direct.id,
          clientMessageId: randomUUID(),
          content: { case: "envelope", value: { ciphertext: new Uint8Array([1, 2, 3]), nonce: new Uint8Array([4]), algorithm: "a", keyId: "k", keyEpoch: 1 } },
        });

        const list = await listAllConversations(clients);
        const g = list.find((x) => x.id === group.id)!;
        assert.equal(g.memberCount, 4);
        assert.equal(g.lastSeq, 2n);
        assert.equal(g.lastMessage?.seq, 2n);
        assert.equal(g.lastMessage?.senderId, d);
        assert.deepEqual(g.lastMessage?.content, { case: "text", value: "latest words" });
        assert.equal(g.name, "four");

        const dm = list.find((x) => x.id === direct.id)!;
        assert.equal(dm.type, ConversationType.DIRECT);
        assert.equal(dm.memberCount, 2);
        assert.equal(dm.directPeerId, b);
        assert.equal(dm.lastMessage?.seq, 1n);
        assert.deepEqual(dm.lastMessage?.content, { case: "encrypted", value: true }, "an envelope previews as encrypted");
      });
    });
  }

  it("shows no preview for a conversation without messages", async () => {
    const [me, b, c] = await newUsers(server, 3, "nopreview");
    const clients = server.clientsFor(me!);
    const group = await createGroup(clients, [b!, c!]);
    const [listed] = await listAllConversations(clients);
    assert.equal(listed?.id, group.id);
    assert.equal(listed?.lastMessage, undefined);
    assert.equal(listed?.lastSeq, 0n);
    assert.equal(listed?.unreadCount, 0n);
    assert.equal(ms(listed?.lastActivityAt), ms(listed?.createdAt), "activity is the creation time when there are no messages");
  });

  it("previews a long text by its first characters", async () => {
    const [me, b, c] = await newUsers(server, 3, "longpreview");
    const clients = server.clientsFor(me!);
    const group = await createGroup(clients, [b!, c!]);
    const text = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    await sendText(clients, group.id, text);
    const [listed] = await listAllConversations(clients);
    const preview = listed?.lastMessage?.content;
    assert.equal(preview?.case, "text");
    const value = preview?.case === "text" ? preview.value : "";
    assert.ok(value.length > 0, "the preview has text");
    assert.ok(text.startsWith(value), "the preview is the start of the message");
    assert.ok(value.length < text.length, "the preview is shorter than a 13,500-character message");
  });

  it("pages through all conversations without repeating one", async () => {
    const [me, b, c] = await newUsers(server, 3, "convpages");
    const clients = server.clientsFor(me!);
    const made: string[] = [];
    for (let i = 0; i < 7; i++) made.push((await createGroup(clients, [b!, c!], `g${i}`)).id);
    const seen: string[] = [];
    let pageToken = "";
    for (let i = 0; i < 20; i++) {
      const res = await clients.conversations.listConversations({ pageSize: 3, pageToken });
      assert.ok(res.conversations.length <= 3);
      seen.push(...res.conversations.map((x) => x.id));
      if (!res.nextPageToken) break;
      pageToken = res.nextPageToken;
    }
    assert.deepEqual([...seen].sort(), [...made].sort());
  });

  it("lists only the caller's conversations", async () => {
    const [me, b, c, outsider] = await newUsers(server, 4, "mine");
    const group = await createGroup(server.clientsFor(me!), [b!, c!]);
    const theirs = await listAllConversations(server.clientsFor(outsider!));
    assert.equal(theirs.some((x) => x.id === group.id), false);
    assert.equal(theirs.length, 0);
  });

  it("rejects a page_size over 100 or below 0, naming page_size", async () => {
    const [me] = await newUsers(server, 1, "cpagesize");
    const clients = server.clientsFor(me!);
    await clients.conversations.listConversations({ pageSize: 100 });
    await expectInvalidArgument(clients.conversations.listConversations({ pageSize: 101 }), "page_size");
    await expectInvalidArgument(clients.conversations.listConversations({ pageSize: -1 }), "page_size");
  });

  it("rejects a garbage page_token, naming page_token", async () => {
    const [me] = await newUsers(server, 1, "cpagetoken");
    await expectInvalidArgument(
      server.clientsFor(me!).conversations.listConversations({ pageToken: "not-a-token" }),
      "page_token",
    );
  });
});

describe("unread counts and MarkRead", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  async function unread(user: string, conversationId: string): Promise<{ get: bigint; listed: bigint; lastRead: bigint }> {
    const clients = server.clientsFor(user);
    const got = (await clients.conversations.getConversation({ conversationId })).conversation!;
    const listed = (await listAllConversations(clients)).find((x) => x.id === conversationId)!;
    return { get: got.unreadCount, listed: listed.unreadCount, lastRead: got.myLastReadSeq };
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("counts only messages from others after the read position", async () => {
        const [a, b, c] = await newUsers(server, 3, "unread");
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        for (let i = 0; i < 3; i++) await sendText(server.clientsFor(a!, protocol), conv.id, `a${i}`); // seq 1..3
        for (let i = 0; i < 2; i++) await sendText(server.clientsFor(b!, protocol), conv.id, `b${i}`); // seq 4..5

        assert.deepEqual(await unread(c!, conv.id), { get: 5n, listed: 5n, lastRead: 0n });
        const forA = await unread(a!, conv.id);
        assert.equal(forA.get, 2n, "a's own messages are never unread for a");
        assert.equal(forA.listed, 2n);
        const forB = await unread(b!, conv.id);
        assert.equal(forB.get, 3n, "b's own messages are never unread for b");

        const marked = await server.clientsFor(c!, protocol).conversations.markRead({ conversationId: conv.id, seq: 3n });
        assert.equal(marked.lastReadSeq, 3n);
        assert.equal(marked.unreadCount, 2n);
        assert.deepEqual(await unread(c!, conv.id), { get: 2n, listed: 2n, lastRead: 3n });

        const all = await server.clientsFor(c!, protocol).conversations.markRead({ conversationId: conv.id, seq: 5n });
        assert.equal(all.lastReadSeq, 5n);
        assert.equal(all.unreadCount, 0n);

        await sendText(server.clientsFor(a!, protocol), conv.id, "one more"); // seq 6
        await sendText(server.clientsFor(c!, protocol), conv.id, "my own"); // seq 7
        const after = await unread(c!, conv.id);
        assert.equal(after.get, 1n, "only a's new message is unread for c");
        assert.equal(after.listed, 1n);
      });

      it("never moves the read position back", async () => {
        const [a, b, c] = await newUsers(server, 3, "noback");
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        for (let i = 0; i < 5; i++) await sendText(server.clientsFor(a!, protocol), conv.id, `m${i}`);
        const reader = server.clientsFor(b!, protocol);
        await reader.conversations.markRead({ conversationId: conv.id, seq: 4n });
        const back = await reader.conversations.markRead({ conversationId: conv.id, seq: 2n });
        assert.equal(back.lastReadSeq, 4n);
        assert.equal(back.unreadCount, 1n);
        const seen = await unread(b!, conv.id);
        assert.deepEqual(seen, { get: 1n, listed: 1n, lastRead: 4n });
        const members = await reader.conversations.listMembers({ conversationId: conv.id });
        assert.equal(members.members.find((m) => m.userId === b)?.lastReadSeq, 4n);
      });

      it("rejects MarkRead beyond the last seq, naming seq, and keeps the position", async () => {
        const [a, b, c] = await newUsers(server, 3, "beyond");
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        for (let i = 0; i < 3; i++) await sendText(server.clientsFor(a!, protocol), conv.id, `m${i}`);
        const reader = server.clientsFor(b!, protocol);
        await reader.conversations.markRead({ conversationId: conv.id, seq: 1n });
        await expectInvalidArgument(reader.conversations.markRead({ conversationId: conv.id, seq: 4n }), "seq");
        await expectInvalidArgument(reader.conversations.markRead({ conversationId: conv.id, seq: -1n }), "seq");
        assert.deepEqual(await unread(b!, conv.id), { get: 2n, listed: 2n, lastRead: 1n });
      });
    });
  }

  it("keeps the highest read position when MarkRead calls race", async () => {
    const [a, b, c] = await newUsers(server, 3, "racemark");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    for (let i = 0; i < 10; i++) await sendText(server.clientsFor(a!), conv.id, `m${i}`);
    await Promise.all(
      [3n, 9n, 1n, 7n, 10n, 2n, 5n].map((seq, i) =>
        server.clientsFor(b!, i % 2 ? "grpc" : "connect").conversations.markRead({ conversationId: conv.id, seq }),
      ),
    );
    assert.deepEqual(await unread(b!, conv.id), { get: 0n, listed: 0n, lastRead: 10n });
  });

  it("rejects MarkRead with a seq in a conversation with no messages, naming seq", async () => {
    const [a, b, c] = await newUsers(server, 3, "emptymark");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    await expectInvalidArgument(server.clientsFor(b!).conversations.markRead({ conversationId: conv.id, seq: 1n }), "seq");
  });
});
