/**
 * A publish lost in one partition holds back only that partition (contract: "Live delivery").
 * Two nodes; node A drops (through the test-only fault hook createApp(config, { faults:
 * { dropPublish } })) the NATS publish of a message in partition p. Subscribers on node B get a
 * message of another partition promptly, while p waits; the lost message arrives once the hole
 * is filled from PostgreSQL (after a later event in p, or by the head poll when none comes),
 * each message exactly once and in order; cursors given while p was held resume correctly.
 * Needs DATABASE_URL and NATS; skipped otherwise.
 */
import assert from "node:assert/strict";
import { partitionOf } from "../../src/log/partitions.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { eventually, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { readEvents } from "../helpers/event-log-db.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { newUsers, type Clients, type Protocol, type TestServer } from "../helpers/test-server.ts";

const PARTITIONS = 4;

/**
 * What node A's fault hook drops: while `dropAll` is on, every event of `partition` (each
 * remembered); afterwards, only those remembered, whenever they are offered again (a republish
 * by the relay must not fill the hole behind the test's back: the contract says "never publishes").
 */
const fault = {
  partition: -1,
  dropAll: false,
  dropped: new Set<string>(),
};

function dropPublish(partition: number, position: bigint | number): boolean {
  if (partition !== fault.partition) return false;
  const k = String(position);
  if (fault.dropAll) fault.dropped.add(k);
  return fault.dropped.has(k);
}

describe("a publish dropped in one partition", function () {
  this.timeout(30_000);
  let cluster: Cluster;
  let nodeA: TestServer;
  let nodeB: TestServer;
  const feeds: Feed[] = [];
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2, { EVENT_PARTITIONS: String(PARTITIONS) }, {
      appOptionsFor: (i) => (i === 0 ? { faults: { dropPublish } } : undefined),
    });
    [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
    fault.partition = -1;
    fault.dropAll = false;
    fault.dropped.clear();
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Sender a, subscribers b and c; two groups of all three in different partitions. */
  async function setup(prefix: string) {
    const [a, b, c] = await newUsers(nodeA, 3, prefix);
    const A = nodeA.clientsFor(a!, "grpc");
    const held = await createGroup(A, [b!, c!], "held");
    let other = held;
    for (let i = 0; i < 40 && partitionOf(other.id, PARTITIONS) === partitionOf(held.id, PARTITIONS); i++) {
      other = await createGroup(A, [b!, c!], `other${i}`);
    }
    assert.notEqual(partitionOf(other.id, PARTITIONS), partitionOf(held.id, PARTITIONS), "precondition: two partitions");
    // Subscribers on node B over both protocols, and one on node A (the dropping node).
    const live = async (node: TestServer, user: string, protocol: Protocol, label: string) => {
      const f = await openLiveFeed(node.clientsFor(user, protocol), { label });
      feeds.push(f);
      return f;
    };
    const onB = [await live(nodeB, b!, "grpc", "b@B/grpc"), await live(nodeB, c!, "connect", "c@B/connect")];
    const onA = await live(nodeA, b!, "connect", "b@A/connect");
    return { A, held: held.id, other: other.id, onB, onA, b: b! };
  }

  /** Sends a message in `conv` while node A drops every publish of its partition; returns it once it is known dropped. */
  async function sendDropped(A: Clients, conv: string, text: string) {
    fault.partition = partitionOf(conv, PARTITIONS);
    fault.dropAll = true;
    const m = await sendText(A, conv, text);
    let position: bigint | undefined;
    try {
      await eventually(async () => {
        const row = (await readEvents(cluster.databaseUrl)).find(
          (r) => r.conversationId === conv && r.event.kind.case === "messageCreated" && r.event.kind.value.message?.seq === m.seq,
        );
        position = row?.position;
        return row !== undefined && fault.dropped.has(String(row.position));
      }, `precondition: node A's fault hook was offered (and dropped) the publish of ${text}`);
    } finally {
      fault.dropAll = false;
    }
    return { m, position: position! };
  }

  it("delivers other partitions at once and the held partition, in order and once, after the hole is filled", async () => {
    const s = await setup("hole");
    const { m: lost } = await sendDropped(s.A, s.held, "lost publish");
    const behind = await sendText(s.A, s.held, "published, but behind the hole");
    const sentOther = Date.now();
    const flowing = await sendText(s.A, s.other, "another partition");

    for (const f of s.onB) {
      const { index: otherAt } = await f.waitForEvent(isMessage(s.other, flowing.seq), "the other partition's message", { timeoutMs: 2_000 });
      const latency = f.received[otherAt]!.at - sentOther;
      const heldBefore = f.received.slice(0, otherAt).filter((r) => r.frame.case === "event" && (isMessage(s.held, lost.seq)(r.frame.value) || isMessage(s.held, behind.seq)(r.frame.value)));
      assert.deepEqual(
        heldBefore.map((r) => r.frame.case),
        [],
        `${f.label}: the other partition's message (sent last, ${latency} ms to arrive) came before the held partition's hole was filled; got ${f.summary()}`,
      );
    }
    for (const f of [...s.onB, s.onA]) {
      const { index: lostAt } = await f.waitForEvent(isMessage(s.held, lost.seq), "the lost message, filled from PostgreSQL", { timeoutMs: 5_000 });
      const { index: behindAt } = await f.waitForEvent(isMessage(s.held, behind.seq), "the message behind the hole", { timeoutMs: 5_000 });
      assert.ok(lostAt < behindAt, `${f.label}: the held partition keeps its order (seq ${lost.seq} before ${behind.seq}); got ${f.summary()}`);
    }
    // The partition flows again.
    const after = await sendText(s.A, s.held, "after the fill");
    for (const f of [...s.onB, s.onA]) {
      await f.waitForEvent(isMessage(s.held, after.seq), "a message of the filled partition, live", { timeoutMs: 3_000 });
      for (const [conv, seq] of [[s.held, lost.seq], [s.held, behind.seq], [s.other, flowing.seq], [s.held, after.seq]] as const) {
        assert.equal(f.events.filter(isMessage(conv, seq)).length, 1, `${f.label}: ${conv.slice(-6)}#${seq} exactly once; got ${f.summary()}`);
      }
    }

    // The cursor given with the other partition's message, while the held one waited, resumes
    // with everything that came after it in the held partition.
    const fb = s.onB[0]!;
    const flowingEvent = fb.events.find(isMessage(s.other, flowing.seq))!;
    const resumed = await openLiveFeed(nodeA.clientsFor(s.b, "grpc"), { cursor: flowingEvent.cursor, label: "b resumed from the other partition's cursor" });
    feeds.push(resumed);
    const replayed = resumed.events.filter((e) => e.kind.case === "messageCreated").map((e) => `${e.conversationId}#${e.kind.case === "messageCreated" ? e.kind.value.message?.seq : ""}`);
    assert.deepEqual(
      replayed,
      [`${s.held}#${lost.seq}`, `${s.held}#${behind.seq}`, `${s.held}#${after.seq}`],
      "resuming from that cursor replays the held partition's messages, once each, and nothing of the other partition before it",
    );
  });

  it("fills a lost publish at the head of a partition (nothing after it there) by the head poll, without holding other partitions", async () => {
    const s = await setup("head");
    const sentLost = Date.now();
    const { m: lost } = await sendDropped(s.A, s.held, "lost at the head");
    const flowing = await sendText(s.A, s.other, "another partition");
    for (const f of s.onB) {
      await f.waitForEvent(isMessage(s.other, flowing.seq), "the other partition's message", { timeoutMs: 2_000 });
    }
    for (const f of [...s.onB, s.onA]) {
      // Head poll every 1 s, hole timeout 250 ms: well within 4 s.
      const { index } = await f.waitForEvent(isMessage(s.held, lost.seq), "the lost message with nothing after it in its partition", { timeoutMs: 4_000 });
      assert.ok(f.received[index]!.at - sentLost < 4_000, `${f.label}: filled within 4 s`);
    }
    const fence = await sendText(s.A, s.held, "fence");
    for (const f of [...s.onB, s.onA]) {
      await f.waitForEvent(isMessage(s.held, fence.seq), "the fence message", { timeoutMs: 3_000 });
      assert.equal(f.events.filter(isMessage(s.held, lost.seq)).length, 1, `${f.label}: the lost message exactly once; got ${f.summary()}`);
      assert.equal(f.events.filter(isMessage(s.other, flowing.seq)).length, 1, `${f.label}: the other message exactly once`);
    }
  });
});
