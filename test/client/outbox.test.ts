/**
 * The outbox sender with a scripted server: what it resends, re-encrypts, gives up on, and the
 * order it sends in. (The real-server behaviour is in session and outbox-restart tests.)
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { PlainContentSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { MessageSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import { SendMessageRequestSchema, type SendMessageRequest } from "../../gen/parley/v1/message_service_pb.ts";
import { Gate } from "../../src/client/gate.ts";
import { Outbox } from "../../src/client/outbox.ts";
import { OutboxStore, type OutboxItem } from "../../src/client/outbox-store.ts";
import { MemoryStore } from "../../src/client/storage.ts";

const stale = () =>
  new ConnectError("key epoch moved on", Code.FailedPrecondition, undefined, [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: "STALE_KEY_EPOCH", domain: "parley" }) },
  ]);

/** An outbox whose server answers each SendMessage with the next scripted outcome (default: stored). */
function scripted(outcomes: Array<"ok" | Error>) {
  const store = new OutboxStore(new MemoryStore());
  const sent: SendMessageRequest[] = [];
  const builds: Array<{ item: OutboxItem; fresh: boolean }> = [];
  let epoch = 1;
  const outbox = new Outbox({
    store,
    gate: new Gate(true),
    backoff: { initialMs: 1, maxMs: 5 },
    async buildRequest(item, fresh) {
      if (fresh) epoch++;
      builds.push({ item, fresh });
      return create(SendMessageRequestSchema, {
        conversationId: item.conversationId,
        clientMessageId: item.clientMessageId,
        content: { case: "text", value: `${item.draft.content.text}@epoch${epoch}` },
      });
    },
    async send(request): Promise<Message> {
      sent.push(request);
      const outcome = outcomes.shift() ?? "ok";
      if (outcome !== "ok") throw outcome;
      return create(MessageSchema, { conversationId: request.conversationId, clientMessageId: request.clientMessageId, seq: BigInt(sent.length) });
    },
  });
  const controller = new AbortController();
  const running = outbox.run(controller.signal);
  return { outbox, store, sent, builds, stop: async () => (controller.abort(), running) };
}

const draft = (text: string) => ({ content: create(PlainContentSchema, { text }), mentionUserIds: [] });

describe("client outbox sender", () => {
  it("resends the very same request after transient failures, and removes it once stored", async () => {
    const s = scripted([new ConnectError("down", Code.Unavailable), new ConnectError("slow", Code.DeadlineExceeded), new TypeError("fetch failed")]);
    const p = await s.outbox.enqueue("c", draft("hi"));
    await p.message;
    await s.stop();
    assert.equal(s.sent.length, 4);
    assert.equal(s.builds.length, 1, "built (encrypted) once");
    for (const r of s.sent) assert.deepEqual(r, s.sent[0], "each attempt sends the same bytes");
    assert.equal(s.sent[0]!.clientMessageId, p.localId);
    assert.deepEqual(await s.store.list(), []);
  });

  it("re-reads the conversation and encrypts again on STALE_KEY_EPOCH, keeping the client_message_id", async () => {
    const s = scripted([stale()]);
    const p = await s.outbox.enqueue("c", draft("hi"));
    await p.message;
    await s.stop();
    assert.deepEqual(s.builds.map((b) => b.fresh), [false, true]);
    assert.deepEqual(s.sent.map((r) => r.content.value), ["hi@epoch1", "hi@epoch2"]);
    assert.deepEqual(s.sent.map((r) => r.clientMessageId), [p.localId, p.localId]);
  });

  it("fails a send the server refuses for good and goes on with the next, in local order", async () => {
    const s = scripted([new ConnectError("nope", Code.PermissionDenied)]);
    const first = await s.outbox.enqueue("c", draft("one"));
    const second = await s.outbox.enqueue("c", draft("two"));
    await assert.rejects(first.message, /PermissionDenied/);
    await second.message;
    await s.stop();
    assert.deepEqual(s.sent.map((r) => r.content.value), ["one@epoch1", "two@epoch1"]);
    const left = await s.store.list();
    assert.equal(left.length, 1);
    assert.match(left[0]!.failure ?? "", /PermissionDenied/);
  });

  it("sends strictly by local sequence, across conversations", async () => {
    const s = scripted([]);
    const pending = [];
    for (let i = 0; i < 20; i++) pending.push(await s.outbox.enqueue(i % 2 ? "a" : "b", draft(`m${i}`)));
    await Promise.all(pending.map((p) => p.message));
    await s.stop();
    assert.deepEqual(s.sent.map((r) => r.content.value), pending.map((_, i) => `m${i}@epoch1`));
  });

  it("keeps the built request in the store, so a restarted client resends it unchanged", async () => {
    const memory = new MemoryStore();
    const store = new OutboxStore(memory);
    const item: OutboxItem = { localSeq: await store.nextLocalSeq(), conversationId: "c", clientMessageId: "cmid-1", draft: draft("x") };
    item.request = create(SendMessageRequestSchema, { conversationId: "c", clientMessageId: "cmid-1", content: { case: "text", value: "first build" } });
    await store.put(item);
    const [back] = await new OutboxStore(memory).list();
    assert.equal(back!.request?.content.value, "first build");
    assert.equal(back!.clientMessageId, "cmid-1");
    assert.equal(await new OutboxStore(memory).nextLocalSeq(), 2n, "local sequence continues after a restart");
  });
});
