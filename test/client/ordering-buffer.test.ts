/** The ordering buffer alone: seq order and exactly-once, whatever order the feed delivers in. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import { OrderingBuffer } from "../../src/client/ordering-buffer.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { SyncState } from "../../src/client/sync-state.ts";

const CONV = "c1";

function msg(seq: number, conversationId = CONV): Message {
  return create(MessageSchema, { conversationId, seq: BigInt(seq), content: { case: "text", value: `m${seq}` } });
}

/** A history of `count` messages that serves FORWARD pages of at most `pageSize`, counting calls. */
function history(count: number, pageSize = 3) {
  const calls: Array<{ conversationId: string; after: bigint }> = [];
  return {
    calls,
    fetchAfter: async (conversationId: string, after: bigint) => {
      calls.push({ conversationId, after });
      const out: Message[] = [];
      for (let s = Number(after) + 1; s <= count && out.length < pageSize; s++) out.push(msg(s, conversationId));
      return out;
    },
  };
}

const seqs = (ms: Message[]) => ms.map((m) => Number(m.seq));

/** What the session does: accept, hand each message to the app, record it as delivered. */
async function take(buffer: OrderingBuffer, message: Message): Promise<Message[]> {
  const out = await buffer.accept(message);
  for (const m of out) await buffer.delivered(m);
  return out;
}

describe("client ordering buffer", () => {
  it("hands over consecutive messages as they come, without reading history", async () => {
    const h = history(10);
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: h.fetchAfter });
    const out: number[] = [];
    for (const s of [1, 2, 3]) out.push(...seqs(await take(buffer, msg(s))));
    assert.deepEqual(out, [1, 2, 3]);
    assert.equal(h.calls.length, 0, "no gap, no history read");
  });

  it("starts a conversation seen for the first time at its first message", async () => {
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: history(10).fetchAfter });
    assert.deepEqual(seqs(await take(buffer, msg(7))), [7]);
    assert.deepEqual(seqs(await take(buffer, msg(8))), [8]);
  });

  it("fills a gap from history (across pages) and then hands over the message that revealed it", async () => {
    const h = history(10, 3);
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: h.fetchAfter });
    await take(buffer, msg(1));
    assert.deepEqual(seqs(await take(buffer, msg(9))), [2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(h.calls.length >= 3, "paged through history");
    assert.deepEqual(seqs(await take(buffer, msg(10))), [10]);
  });

  it("never hands over a seq twice: replays, duplicates and late arrivals of filled seqs are dropped", async () => {
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: history(10).fetchAfter });
    const out: number[] = [];
    for (const s of [1, 2, 2, 5, 3, 4, 5, 1, 6]) out.push(...seqs(await take(buffer, msg(s))));
    assert.deepEqual(out, [1, 2, 3, 4, 5, 6]);
  });

  it("keeps conversations apart", async () => {
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: history(10).fetchAfter });
    assert.deepEqual(seqs(await take(buffer, msg(1, "a"))), [1]);
    assert.deepEqual(seqs(await take(buffer, msg(4, "b"))), [4]);
    assert.deepEqual(seqs(await take(buffer, msg(3, "a"))), [2, 3]);
  });

  it("remembers positions in the store, so a restarted client does not repeat itself", async () => {
    const store = new MemoryStore();
    const first = new OrderingBuffer({ positions: new SyncState(store), fetchAfter: history(10).fetchAfter });
    await take(first, msg(1));
    await take(first, msg(2));
    const second = new OrderingBuffer({ positions: new SyncState(store), fetchAfter: history(10).fetchAfter });
    assert.deepEqual(seqs(await take(second, msg(2))), []);
    assert.deepEqual(seqs(await take(second, msg(4))), [3, 4]);
  });

  it("catches a known conversation up to its last seq, and only records the position of an unknown one", async () => {
    const buffer = new OrderingBuffer({ positions: new SyncState(new MemoryStore()), fetchAfter: history(10).fetchAfter });
    await take(buffer, msg(2, "known"));
    const caughtUp = await buffer.catchUp("known", 6n);
    for (const m of caughtUp) await buffer.delivered(m);
    assert.deepEqual(seqs(caughtUp), [3, 4, 5, 6]);
    assert.deepEqual(seqs(await buffer.catchUp("unknown", 6n)), []);
    assert.deepEqual(seqs(await take(buffer, msg(7, "unknown"))), [7]);
  });

  it("hands a message over again after a restart when the app never got it (nothing lost)", async () => {
    const store = new MemoryStore();
    const first = new OrderingBuffer({ positions: new SyncState(store), fetchAfter: history(10).fetchAfter });
    await take(first, msg(1));
    await first.accept(msg(2)); // the client stops before the app is handed seq 2
    const second = new OrderingBuffer({ positions: new SyncState(store), fetchAfter: history(10).fetchAfter });
    assert.deepEqual(seqs(await take(second, msg(2))), [2]);
  });
});
