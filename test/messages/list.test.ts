import assert from "node:assert/strict";
import { ListDirection } from "../../gen/parley/v1/message_service_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";

const seqs = (from: number, to: number): bigint[] => {
  const out: bigint[] = [];
  const step = from <= to ? 1 : -1;
  for (let s = from; step > 0 ? s <= to : s >= to; s += step) out.push(BigInt(s));
  return out;
};

describe("ListMessages", () => {
  let server: TestServer;
  let owner: string;
  let member: string;
  /** 25 messages, seq 1..25, text "m<seq>". */
  let convId: string;
  /** 60 messages, for the default page size. */
  let bigConvId: string;
  /** 20 messages: a whole number of pages of 10. */
  let evenConvId: string;
  /** No messages. */
  let emptyConvId: string;

  before(async function () {
    this.timeout(60_000);
    server = await startTestServer();
    const [a, b, c] = await newUsers(server, 3, "pager");
    owner = a!;
    member = b!;
    const clients = server.clientsFor(owner);
    convId = (await createGroup(clients, [b!, c!], "paged")).id;
    for (let i = 1; i <= 25; i++) await sendText(clients, convId, `m${i}`);
    bigConvId = (await createGroup(clients, [b!, c!], "big")).id;
    for (let i = 1; i <= 60; i++) await sendText(clients, bigConvId, `b${i}`);
    evenConvId = (await createGroup(clients, [b!, c!], "even")).id;
    for (let i = 1; i <= 20; i++) await sendText(clients, evenConvId, `e${i}`);
    emptyConvId = (await createGroup(clients, [b!, c!], "empty")).id;
  });
  after(async () => {
    await server?.stop();
  });

  async function walk(
    clients: Clients,
    conversationId: string,
    first: { direction?: ListDirection; startSeq?: bigint },
    pageSize: number,
  ): Promise<bigint[][]> {
    const pages: bigint[][] = [];
    let pageToken = "";
    for (let i = 0; i < 100; i++) {
      const res = await clients.messages.listMessages(
        pageToken ? { conversationId, pageSize, pageToken } : { conversationId, pageSize, ...first },
      );
      pages.push(res.messages.map((m) => m.seq));
      if (!res.nextPageToken) return pages;
      pageToken = res.nextPageToken;
    }
    throw new Error("the walk never ended");
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("pages backward from the newest message by default, in descending seq", async () => {
        const pages = await walk(server.clientsFor(member, protocol), convId, {}, 10);
        assert.deepEqual(pages, [seqs(25, 16), seqs(15, 6), seqs(5, 1)]);
      });

      it("pages backward when BACKWARD is asked for explicitly", async () => {
        const pages = await walk(server.clientsFor(member, protocol), convId, { direction: ListDirection.BACKWARD }, 10);
        assert.deepEqual(pages, [seqs(25, 16), seqs(15, 6), seqs(5, 1)]);
      });

      it("pages forward from the oldest message in ascending seq", async () => {
        const pages = await walk(server.clientsFor(member, protocol), convId, { direction: ListDirection.FORWARD }, 10);
        assert.deepEqual(pages, [seqs(1, 10), seqs(11, 20), seqs(21, 25)]);
      });

      it("starts after start_seq, below it backward and above it forward", async () => {
        const clients = server.clientsFor(member, protocol);
        const back = await clients.messages.listMessages({ conversationId: convId, pageSize: 5, startSeq: 10n });
        assert.deepEqual(back.messages.map((m) => m.seq), seqs(9, 5));
        const fwd = await clients.messages.listMessages({
          conversationId: convId,
          pageSize: 5,
          startSeq: 10n,
          direction: ListDirection.FORWARD,
        });
        assert.deepEqual(fwd.messages.map((m) => m.seq), seqs(11, 15));

        const backWalk = await walk(clients, convId, { startSeq: 10n }, 4);
        assert.deepEqual(backWalk.flat(), seqs(9, 1));
        const fwdWalk = await walk(clients, convId, { startSeq: 20n, direction: ListDirection.FORWARD }, 4);
        assert.deepEqual(fwdWalk.flat(), seqs(21, 25));
      });

      it("returns the message bodies with their seqs", async () => {
        const res = await server.clientsFor(member, protocol).messages.listMessages({
          conversationId: convId,
          pageSize: 3,
          direction: ListDirection.FORWARD,
        });
        assert.deepEqual(
          res.messages.map((m) => [m.seq, m.content.case === "text" ? m.content.value : null, m.senderId, m.conversationId]),
          [
            [1n, "m1", owner, convId],
            [2n, "m2", owner, convId],
            [3n, "m3", owner, convId],
          ],
        );
      });
    });
  }

  it("ends the walk with an empty next_page_token on the page that reaches the end", async () => {
    const clients = server.clientsFor(member);
    const back = await walk(clients, evenConvId, {}, 10);
    assert.deepEqual(back, [seqs(20, 11), seqs(10, 1)], "no empty trailing page backward");
    const fwd = await walk(clients, evenConvId, { direction: ListDirection.FORWARD }, 10);
    assert.deepEqual(fwd, [seqs(1, 10), seqs(11, 20)], "no empty trailing page forward");
  });

  it("keeps walking in the token's direction whatever direction and start_seq say", async () => {
    const clients = server.clientsFor(member);
    const first = await clients.messages.listMessages({ conversationId: convId, pageSize: 5, direction: ListDirection.FORWARD });
    assert.deepEqual(first.messages.map((m) => m.seq), seqs(1, 5));
    const second = await clients.messages.listMessages({
      conversationId: convId,
      pageSize: 5,
      pageToken: first.nextPageToken,
      direction: ListDirection.BACKWARD,
      startSeq: 20n,
    });
    assert.deepEqual(second.messages.map((m) => m.seq), seqs(6, 10));
  });

  it("picks up messages sent after a forward walk paused", async () => {
    const [a, b, c] = await newUsers(server, 3, "resume");
    const clients = server.clientsFor(a!);
    const conv = await createGroup(clients, [b!, c!]);
    for (let i = 0; i < 4; i++) await sendText(clients, conv.id, `r${i}`);
    const first = await clients.messages.listMessages({ conversationId: conv.id, pageSize: 3, direction: ListDirection.FORWARD });
    assert.deepEqual(first.messages.map((m) => m.seq), seqs(1, 3));
    assert.notEqual(first.nextPageToken, "");
    for (let i = 0; i < 3; i++) await sendText(clients, conv.id, `late${i}`);
    const rest = await clients.messages.listMessages({ conversationId: conv.id, pageSize: 10, pageToken: first.nextPageToken });
    assert.deepEqual(rest.messages.map((m) => m.seq), seqs(4, 7));
  });

  it("returns 50 messages when no page_size is given", async () => {
    const res = await server.clientsFor(member).messages.listMessages({ conversationId: bigConvId });
    assert.deepEqual(res.messages.map((m) => m.seq), seqs(60, 11));
    assert.notEqual(res.nextPageToken, "");
  });

  it("accepts page_size 200", async () => {
    const res = await server.clientsFor(member).messages.listMessages({ conversationId: bigConvId, pageSize: 200 });
    assert.equal(res.messages.length, 60);
    assert.equal(res.nextPageToken, "");
  });

  it("returns nothing and no token for a conversation without messages", async () => {
    for (const direction of [ListDirection.BACKWARD, ListDirection.FORWARD]) {
      const res = await server.clientsFor(member).messages.listMessages({ conversationId: emptyConvId, direction });
      assert.deepEqual(res.messages, []);
      assert.equal(res.nextPageToken, "");
    }
  });

  it("rejects a page_size over 200, naming page_size", async () => {
    await expectInvalidArgument(
      server.clientsFor(member).messages.listMessages({ conversationId: convId, pageSize: 201 }),
      "page_size",
    );
  });

  it("rejects a negative page_size, naming page_size", async () => {
    await expectInvalidArgument(
      server.clientsFor(member).messages.listMessages({ conversationId: convId, pageSize: -1 }),
      "page_size",
    );
  });

  it("rejects a page_token from another conversation, naming page_token", async () => {
    const clients = server.clientsFor(member);
    const other = await clients.messages.listMessages({ conversationId: bigConvId, pageSize: 5 });
    assert.notEqual(other.nextPageToken, "");
    await expectInvalidArgument(
      clients.messages.listMessages({ conversationId: convId, pageSize: 5, pageToken: other.nextPageToken }),
      "page_token",
    );
  });

  it("rejects a garbage page_token, naming page_token", async () => {
    const clients = server.clientsFor(member);
    for (const pageToken of ["garbage", "AAAA", "eyJzZXEiOjEwfQ", "%%%", "x".repeat(2000)]) {
      await expectInvalidArgument(clients.messages.listMessages({ conversationId: convId, pageToken }), "page_token");
    }
  });

  it("rejects a tampered page_token, naming page_token", async () => {
    const clients = server.clientsFor(member);
    const page = await clients.messages.listMessages({ conversationId: convId, pageSize: 5 });
    const token = page.nextPageToken;
    assert.notEqual(token, "");
    // Flip one character in the middle of the token.
    const i = Math.floor(token.length / 2);
    const flipped = token.slice(0, i) + (token[i] === "A" ? "B" : "A") + token.slice(i + 1);
    const outcome = await clients.messages
      .listMessages({ conversationId: convId, pageSize: 5, pageToken: flipped })
      .then((res) => ({ ok: true as const, res }), (err: unknown) => ({ ok: false as const, err }));
    if (outcome.ok) {
      // A token that is not signed may still decode; then it must at least stay in this conversation.
      for (const m of outcome.res.messages) assert.equal(m.conversationId, convId);
      return;
    }
    await expectInvalidArgument(Promise.reject(outcome.err), "page_token");
  });

  it("rejects a malformed conversation id, naming conversation_id", async () => {
    await expectInvalidArgument(
      server.clientsFor(member).messages.listMessages({ conversationId: "not an id!" }),
      "conversation_id",
    );
  });
});
