import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument, expectOneOfCodes, namesField, violatedFields } from "../helpers/expect.ts";
import { createGroup, everyByte, listAllForward, sendText } from "../helpers/fixtures.ts";

describe("SendMessage", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("stores a text message with seq 1, the sender and the client's id", async () => {
        const [a, b, c] = await newUsers(server, 3, "first");
        const clients = server.clientsFor(a!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        const clientMessageId = randomUUID();
        const res = await clients.messages.sendMessage({
          conversationId: conv.id,
          clientMessageId,
          content: { case: "text", value: "hello, world" },
        });
        const m = res.message!;
        assert.ok(m.id, "has an id");
        assert.equal(m.conversationId, conv.id);
        assert.equal(m.seq, 1n);
        assert.equal(m.senderId, a);
        assert.equal(m.clientMessageId, clientMessageId);
        assert.ok(m.createdAt, "created_at is set");
        assert.equal(m.replyToSeq, undefined);
        assert.deepEqual(m.content, { case: "text", value: "hello, world" });

        const got = await server.clientsFor(b!, protocol).messages.getMessage({ conversationId: conv.id, seq: 1n });
        assert.equal(got.message?.id, m.id);
        assert.deepEqual(got.message?.content, { case: "text", value: "hello, world" });
      });

      it("returns the original message when a send is retried", async () => {
        const [a, b, c] = await newUsers(server, 3, "retry");
        const clients = server.clientsFor(a!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        const clientMessageId = randomUUID();
        const send = (text: string) =>
          clients.messages.sendMessage({ conversationId: conv.id, clientMessageId, content: { case: "text", value: text } });
        const first = (await send("once")).message!;
        const retry = (await send("once")).message!;
        assert.equal(retry.id, first.id);
        assert.equal(retry.seq, first.seq);

        const changed = (await send("a different body")).message!;
        assert.equal(changed.id, first.id, "a retry with other content still returns the first result");
        assert.deepEqual(changed.content, { case: "text", value: "once" });

        const history = await listAllForward(clients, conv.id);
        assert.equal(history.length, 1, "the retries stored nothing");

        const next = await sendText(clients, conv.id, "next");
        assert.equal(next.seq, first.seq + 1n, "a retry does not use up a seq");
      });

      it("round-trips an encrypted envelope byte for byte", async () => {
        const [a, b, c] = await newUsers(server, 3, "sealed");
        const clients = server.clientsFor(a!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        const envelope = {
          ciphertext: everyByte(300),
          nonce: Uint8Array.from([0, 255, 1, 254, 2, 253, 3, 252, 4, 251, 5, 250, 6, 249, 7, 248, 8, 247, 9, 246, 10, 245, 0, 0]),
          algorithm: "x25519-xsalsa20-poly1305",
          keyId: "bundle:7f3e",
          keyEpoch: 7,
        };
        const sent = (
          await clients.messages.sendMessage({
            conversationId: conv.id,
            clientMessageId: randomUUID(),
            content: { case: "envelope", value: envelope },
          })
        ).message!;

        for (const reader of [a!, b!]) {
          const readerClients = server.clientsFor(reader, protocol);
          const got = (await readerClients.messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message!;
          const listed = (await readerClients.messages.listMessages({ conversationId: conv.id })).messages[0]!;
          for (const m of [sent, got, listed]) {
            assert.equal(m.content.case, "envelope");
            if (m.content.case !== "envelope") continue;
            assert.deepEqual([...m.content.value.ciphertext], [...envelope.ciphertext]);
            assert.deepEqual([...m.content.value.nonce], [...envelope.nonce]);
            assert.equal(m.content.value.algorithm, envelope.algorithm);
            assert.equal(m.content.value.keyId, envelope.keyId);
            assert.equal(m.content.value.keyEpoch, envelope.keyEpoch);
          }
        }
      });

      it("keeps every uint32 key_epoch, up to 4294967295", async () => {
        const [a, b, c] = await newUsers(server, 3, "epoch");
        const clients = server.clientsFor(a!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        for (const keyEpoch of [0, 2_147_483_647, 2_147_483_648, 4_294_967_295]) {
          const sent = (
            await clients.messages.sendMessage({
              conversationId: conv.id,
              clientMessageId: randomUUID(),
              content: {
                case: "envelope",
                value: { ciphertext: new Uint8Array([1]), nonce: new Uint8Array([2]), algorithm: "a", keyId: "k", keyEpoch },
              },
            })
          ).message!;
          const got = (await clients.messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message!;
          assert.equal(got.content.case === "envelope" ? got.content.value.keyEpoch : undefined, keyEpoch);
        }
      });

      it("records reply_to_seq when replying to an existing message", async () => {
        const [a, b, c] = await newUsers(server, 3, "reply");
        const clients = server.clientsFor(a!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        const original = await sendText(clients, conv.id, "question?");
        const reply = await server.clientsFor(b!, protocol).messages.sendMessage({
          conversationId: conv.id,
          clientMessageId: randomUUID(),
          content: { case: "text", value: "answer" },
          replyToSeq: original.seq,
        });
        assert.equal(reply.message?.replyToSeq, original.seq);
        const got = await clients.messages.getMessage({ conversationId: conv.id, seq: reply.message!.seq });
        assert.equal(got.message?.replyToSeq, original.seq);
      });
    });
  }

  it("returns one message to concurrent retries of the same send", async () => {
    const [a, b, c] = await newUsers(server, 3, "concretry");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    const clientMessageId = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        server.clientsFor(a!, i % 2 ? "grpc" : "connect").messages.sendMessage({
          conversationId: conv.id,
          clientMessageId,
          content: { case: "text", value: "exactly once" },
        }),
      ),
    );
    assert.equal(new Set(results.map((r) => r.message?.id)).size, 1, "every retry got the same message");
    assert.deepEqual(new Set(results.map((r) => r.message?.seq)), new Set([1n]));
    assert.equal((await listAllForward(server.clientsFor(a!), conv.id)).length, 1);
  });

  it("treats the same client_message_id from two senders as two messages", async () => {
    const [a, b, c] = await newUsers(server, 3, "twosenders");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    const clientMessageId = randomUUID();
    const send = (user: string) =>
      server.clientsFor(user).messages.sendMessage({
        conversationId: conv.id,
        clientMessageId,
        content: { case: "text", value: `from ${user}` },
      });
    const fromA = (await send(a!)).message!;
    const fromB = (await send(b!)).message!;
    assert.notEqual(fromA.id, fromB.id);
    assert.deepEqual([fromA.seq, fromB.seq], [1n, 2n]);
  });

  it("assigns seqs 1..N without gap or duplicate to concurrent senders", async function () {
    this.timeout(60_000);
    const senders = await newUsers(server, 10, "burst");
    const [owner, ...others] = senders;
    const conv = await createGroup(server.clientsFor(owner!), others, "burst");
    const perSender = 20;

    // Each sender sends its messages one after another, all senders at once.
    const bySender = await Promise.all(
      senders.map(async (sender, i) => {
        const clients = server.clientsFor(sender, i % 2 ? "grpc" : "connect");
        const seqs: bigint[] = [];
        for (let n = 0; n < perSender; n++) {
          seqs.push((await sendText(clients, conv.id, `${sender} #${n}`)).seq);
        }
        return seqs;
      }),
    );

    const total = senders.length * perSender;
    const all = bySender.flat().sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    assert.deepEqual(all, Array.from({ length: total }, (_, i) => BigInt(i + 1)), "seqs are exactly 1..N");
    for (const seqs of bySender) {
      for (let i = 1; i < seqs.length; i++) {
        assert.ok(seqs[i]! > seqs[i - 1]!, "a sender's later send has a higher seq");
      }
    }

    const history = await listAllForward(server.clientsFor(owner!), conv.id);
    assert.deepEqual(history.map((m) => m.seq), Array.from({ length: total }, (_, i) => BigInt(i + 1)));
    for (const m of history) {
      const [sender, n] = (m.content.case === "text" ? m.content.value : "").split(" #");
      assert.equal(m.senderId, sender, "each seq holds its own sender's message");
      assert.ok(Number(n) < perSender);
    }
    const conversation = await server.clientsFor(owner!).conversations.getConversation({ conversationId: conv.id });
    assert.equal(conversation.conversation?.lastSeq, BigInt(total));
  });

  it("assigns gapless seqs to a burst of fully parallel sends", async function () {
    this.timeout(60_000);
    const [a, b, c] = await newUsers(server, 3, "parallel");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    const total = 200;
    const results = await Promise.all(
      Array.from({ length: total }, (_, i) => sendText(server.clientsFor([a!, b!, c!][i % 3]!, i % 2 ? "grpc" : "connect"), conv.id, `p${i}`)),
    );
    const seqs = results.map((m) => m.seq).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => BigInt(i + 1)));
    const history = await listAllForward(server.clientsFor(a!), conv.id);
    assert.equal(history.length, total);
    assert.equal(new Set(history.map((m) => m.id)).size, total);
  });

  describe("bad input", () => {
    let owner: string;
    let convId: string;
    before(async () => {
      const [a, b, c] = await newUsers(server, 3, "badinput");
      owner = a!;
      convId = (await createGroup(server.clientsFor(owner), [b!, c!])).id;
    });

    /** The next good send must take the next seq: proof that the failed one left nothing. */
    async function assertNothingWritten(): Promise<void> {
      const clients = server.clientsFor(owner);
      const before = (await clients.conversations.getConversation({ conversationId: convId })).conversation!.lastSeq;
      const m = await sendText(clients, convId, "good");
      assert.equal(m.seq, before + 1n);
      const history = await listAllForward(clients, convId);
      assert.deepEqual(history.map((h) => h.seq), Array.from({ length: history.length }, (_, i) => BigInt(i + 1)));
    }

    for (const protocol of MAIN_PROTOCOLS) {
      it(`rejects empty text, naming text (${protocol})`, async () => {
        await expectInvalidArgument(
          server.clientsFor(owner, protocol).messages.sendMessage({
            conversationId: convId,
            clientMessageId: randomUUID(),
            content: { case: "text", value: "" },
          }),
          "text",
        );
        await assertNothingWritten();
      });

      it(`rejects text over MAX_MESSAGE_BYTES bytes, naming text (${protocol})`, async () => {
        // 8,193 two-byte characters: within 16,384 characters but 16,386 bytes.
        await expectInvalidArgument(
          server.clientsFor(owner, protocol).messages.sendMessage({
            conversationId: convId,
            clientMessageId: randomUUID(),
            content: { case: "text", value: "é".repeat(8193) },
          }),
          "text",
        );
        await assertNothingWritten();
      });

      it(`rejects a missing client_message_id, naming client_message_id (${protocol})`, async () => {
        await expectInvalidArgument(
          server.clientsFor(owner, protocol).messages.sendMessage({
            conversationId: convId,
            clientMessageId: "",
            content: { case: "text", value: "no id" },
          }),
          "client_message_id",
        );
        await assertNothingWritten();
      });

      it(`rejects a malformed conversation id, naming conversation_id (${protocol})`, async () => {
        await expectInvalidArgument(
          server.clientsFor(owner, protocol).messages.sendMessage({
            conversationId: "not a conversation id!",
            clientMessageId: randomUUID(),
            content: { case: "text", value: "lost" },
          }),
          "conversation_id",
        );
      });
    }

    it("accepts text of exactly MAX_MESSAGE_BYTES bytes", async () => {
      const text = "é".repeat(8192); // 16,384 bytes
      const m = await sendText(server.clientsFor(owner), convId, text);
      const got = await server.clientsFor(owner).messages.getMessage({ conversationId: convId, seq: m.seq });
      assert.deepEqual(got.message?.content, { case: "text", value: text });
    });

    it("rejects a send with neither text nor envelope, naming the content", async () => {
      await expectInvalidArgument(
        server.clientsFor(owner).messages.sendMessage({ conversationId: convId, clientMessageId: randomUUID() }),
        "content",
        "text",
        "envelope",
      );
      await assertNothingWritten();
    });

    it("rejects an empty conversation id, naming conversation_id", async () => {
      await expectInvalidArgument(
        server.clientsFor(owner).messages.sendMessage({
          conversationId: "",
          clientMessageId: randomUUID(),
          content: { case: "text", value: "nowhere" },
        }),
        "conversation_id",
      );
    });

    it("accepts a 64-character client_message_id and rejects a 65-character one", async () => {
      const clients = server.clientsFor(owner);
      await clients.messages.sendMessage({
        conversationId: convId,
        clientMessageId: "k".repeat(63) + randomUUID().slice(0, 1),
        content: { case: "text", value: "long id" },
      });
      await expectInvalidArgument(
        clients.messages.sendMessage({
          conversationId: convId,
          clientMessageId: "k".repeat(65),
          content: { case: "text", value: "too long id" },
        }),
        "client_message_id",
      );
      await assertNothingWritten();
    });

    it("rejects reply_to_seq naming a message that does not exist, naming reply_to_seq", async () => {
      const clients = server.clientsFor(owner);
      const last = (await clients.conversations.getConversation({ conversationId: convId })).conversation!.lastSeq;
      for (const replyToSeq of [last + 5n, -1n]) {
        await expectInvalidArgument(
          clients.messages.sendMessage({
            conversationId: convId,
            clientMessageId: randomUUID(),
            content: { case: "text", value: "reply to nothing" },
            replyToSeq,
          }),
          "reply_to_seq",
        );
      }
      await assertNothingWritten();
    });

    it("lets a client reuse the client_message_id of a send that was rejected", async () => {
      const clients = server.clientsFor(owner);
      const clientMessageId = randomUUID();
      await expectInvalidArgument(
        clients.messages.sendMessage({ conversationId: convId, clientMessageId, content: { case: "text", value: "" } }),
        "text",
      );
      const ok = await clients.messages.sendMessage({
        conversationId: convId,
        clientMessageId,
        content: { case: "text", value: "second try" },
      });
      assert.deepEqual(ok.message?.content, { case: "text", value: "second try" });
    });

    it("refuses an envelope far larger than the message limit and stores nothing", async () => {
      // The contract bounds every size; 256 KiB is sixteen times the 16 KiB message limit.
      const err = await expectOneOfCodes(
        server.clientsFor(owner).messages.sendMessage({
          conversationId: convId,
          clientMessageId: randomUUID(),
          content: {
            case: "envelope",
            value: { ciphertext: new Uint8Array(256 * 1024), nonce: new Uint8Array(24), algorithm: "x", keyId: "k", keyEpoch: 1 },
          },
        }),
        [Code.InvalidArgument, Code.ResourceExhausted],
      );
      if (err.code === Code.InvalidArgument) {
        assert.ok(
          violatedFields(err).some((f) => namesField(f, "ciphertext") || namesField(f, "envelope")),
          `the violation names the envelope: ${violatedFields(err).join(", ")}`,
        );
      }
      await assertNothingWritten();
    });
  });

  it("returns NOT_FOUND from GetMessage for a seq past the end", async () => {
    const [a, b, c] = await newUsers(server, 3, "pastend");
    const clients = server.clientsFor(a!);
    const conv = await createGroup(clients, [b!, c!]);
    await sendText(clients, conv.id, "only one");
    await expectCode(clients.messages.getMessage({ conversationId: conv.id, seq: 2n }), Code.NotFound);
  });
});
