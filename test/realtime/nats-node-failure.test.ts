/**
 * A NATS server SIGKILLed under load: two Parley nodes on a three-server NATS cluster (streams at
 * R3, each node given every server's URL), subscribers on both nodes following many
 * conversations, a send storm from both nodes, and in the middle the server node A is connected
 * to dies. Node A must move to another server; every acknowledged send is stored once; every
 * subscriber ends with exactly the database's messages of its conversations (resuming from its
 * last cursor when its stream ended, as a client would); sends after the kill are served and
 * delivered. The killed server is restarted at the end.
 * Needs DATABASE_URL and nats-server; skipped otherwise.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { describeError, eventually, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertReceivedExactly, DeliveryLedger, failureSummary, key, sendLoop, storedMessages, type SendRecord } from "../helpers/ledger.ts";
import { natsClusterAvailable, startNatsCluster, type NatsCluster } from "../helpers/nats-cluster.ts";
import { startCluster, type Cluster } from "../helpers/realtime.ts";

/** Sends acknowledged before the kill. */
const KILL_AFTER_ACKS = 120;
const CONVERSATIONS = 12;
const SENDS_PER_SENDER = 100;

/**
 * One subscriber as a client app runs it: a stream on one node, reopened from its last cursor
 * whenever the server ends it, everything it processed kept in a ledger.
 */
class Subscriber {
  readonly ledger: DeliveryLedger;
  /** How each stream that ended on its own ended. */
  readonly endings: string[] = [];
  #feed!: Feed;
  #stopped = false;
  #loop: Promise<void> = Promise.resolve();
  #stop!: () => void;
  readonly #stopSignal = new Promise<void>((resolve) => (this.#stop = resolve));

  readonly label: string;
  readonly #server: TestServer;
  readonly #userId: string;
  readonly #protocol: Protocol;

  constructor(server: TestServer, userId: string, protocol: Protocol, label: string) {
    this.#server = server;
    this.#userId = userId;
    this.#protocol = protocol;
    this.label = label;
    this.ledger = new DeliveryLedger(label);
  }

  async start(): Promise<void> {
    this.#feed = await openLiveFeed(this.#server.clientsFor(this.#userId, this.#protocol), { label: `${this.label}#0` });
    this.#loop = this.#follow();
  }

  async #follow(): Promise<void> {
    for (let opened = 1; ; opened++) {
      await Promise.race([this.#feed.done, this.#stopSignal]);
      if (this.#stopped) return;
      const ended = this.#feed;
      this.ledger.absorb(ended);
      this.endings.push(`${ended.label}: ${ended.end?.error ? describeError(ended.end.error) : "ended"}`);
      await delay(100);
      if (this.#stopped) return;
      this.#feed = openFeed(this.#server.clientsFor(this.#userId, this.#protocol), { cursor: ended.lastCursor, label: `${this.label}#${opened}` });
    }
  }

  /** Distinct messages processed so far. */
  received(): number {
    this.ledger.absorb(this.#feed);
    return this.ledger.keys().size;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stop();
    await this.#loop;
    this.#feed.close();
    this.ledger.absorb(this.#feed);
  }
}

describe("a NATS server SIGKILLed in the middle of a send storm (3-server cluster, R3)", function () {
  let nats: NatsCluster | undefined;
  let cluster: Cluster | undefined;
  let nodeA: TestServer;
  let nodeB: TestServer;
  const nodeIds = [`nfail-a-${randomBytes(3).toString("hex")}`, `nfail-b-${randomBytes(3).toString("hex")}`];
  const subscribers: Subscriber[] = [];

  before(async function () {
    if (!process.env.DATABASE_URL || !natsClusterAvailable()) this.skip();
    this.timeout(60_000);
    nats = await startNatsCluster();
    const { urls } = nats;
    // Every server's URL, each node's list starting elsewhere (nats.js shuffles it anyway).
    // TEST_LOG_LEVEL=warn shows what the nodes log, when this test fails.
    const allFrom = (i: number) => [...urls.slice(i), ...urls.slice(0, i)].join(",");
    cluster = await startCluster(2, (i) => ({ NATS_URL: allFrom(i), NATS_STREAM_REPLICAS: "3", NODE_ID: nodeIds[i], LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent" }), { natsUrl: nats.url });
    [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed" || !nats) return;
    for (const [i] of nats.urls.entries()) console.error(`--- nats-server n${i + 1} (tail) ---\n${nats.output(i).slice(-2000)}`);
  });
  after(async function () {
    this.timeout(30_000);
    await Promise.allSettled(subscribers.map((s) => s.stop()));
    try {
      await cluster?.stop();
    } finally {
      await nats?.stop();
    }
  });

  it("keeps every acknowledged send stored once and delivers exactly the database's messages to every subscriber, while the node moves to another server", async function () {
    this.timeout(120_000);
    const natsCluster = nats!;
    const started = Date.now();
    const senders = await newUsers(nodeA, 4, "nfail-p");
    const readers = await newUsers(nodeA, 4, "nfail-s");
    const convIds: string[] = [];
    for (let j = 0; j < CONVERSATIONS; j++) {
      const owner = senders[j % senders.length]!;
      const members = [...senders.filter((id) => id !== owner), ...readers];
      convIds.push((await createGroup((j % 2 ? nodeB : nodeA).clientsFor(owner), members, `nfail ${j}`)).id);
    }

    const servedBy = async (i: number) => natsCluster.serverOf(`parley-${nodeIds[i]}`);
    const victim = await servedBy(0);
    assert.ok(victim !== undefined, "node A's NATS connection is found on one of the servers");

    // Two subscribers per node, over both protocols.
    const placement: [TestServer, Protocol, string][] = [
      [nodeA, "grpc", "A"],
      [nodeA, "connect", "A"],
      [nodeB, "grpc", "B"],
      [nodeB, "connect", "B"],
    ];
    for (const [i, [server, protocol, where]] of placement.entries()) {
      const sub = new Subscriber(server, readers[i]!, protocol, `${readers[i]}@${where}/${protocol}`);
      subscribers.push(sub);
      await sub.start();
    }

    // The storm: two senders per node; the server node A uses is SIGKILLed after KILL_AFTER_ACKS.
    let acked = 0;
    let kill: Promise<void> | undefined;
    let killedAt = 0;
    const onAck = () => {
      if (++acked === KILL_AFTER_ACKS) {
        killedAt = Date.now();
        kill = natsCluster.kill(victim!);
      }
    };
    const stormStart = Date.now();
    const records: SendRecord[] = (
      await Promise.all(
        senders.map((id, i) =>
          sendLoop(() => (i % 2 ? nodeB : nodeA).clientsFor(id, i < 2 ? "grpc" : "connect"), `${id}@${i % 2 ? "B" : "A"}`, {
            conversationIds: convIds,
            count: SENDS_PER_SENDER,
            concurrency: 2,
            onAck,
          }),
        ),
      )
    ).flat();
    const stormMs = Date.now() - stormStart;
    assert.ok(kill, `the kill happened during the storm (${acked} acknowledged; ${failureSummary(records)})`);
    await kill;
    assert.equal(natsCluster.running(victim!), false, "the server is down");

    // Node A is now on another server.
    let movedTo: number | undefined;
    await eventually(async () => {
      movedTo = await servedBy(0);
      return movedTo !== undefined && movedTo !== victim;
    }, `node A reconnected to another NATS server (it was on n${victim! + 1})`, 15_000);

    // A client retries a failed send with the same client_message_id (none should fail: the
    // database commits, NATS only carries the news).
    const failed = records.filter((r) => r.error);
    for (const r of failed) {
      const sender = senders.find((id) => r.text.startsWith(`${id}@`))!;
      const res = await nodeB.clientsFor(sender).messages.sendMessage({
        conversationId: r.conversationId,
        clientMessageId: r.clientMessageId,
        content: { case: "text", value: r.text },
      });
      r.message = res.message;
    }

    // The cluster keeps serving: a send on each node after the kill, delivered to everyone.
    for (const [i, node] of [nodeA, nodeB].entries()) {
      const r: SendRecord = { conversationId: convIds[i]!, clientMessageId: randomUUID(), text: `after the kill on ${"AB"[i]}` };
      const res = await node.clientsFor(senders[i]!).messages.sendMessage({
        conversationId: r.conversationId,
        clientMessageId: r.clientMessageId,
        content: { case: "text", value: r.text },
      });
      r.message = res.message;
      records.push(r);
    }

    // Stored once each, as acknowledged.
    const stored = await storedMessages(nodeB.clientsFor(readers[0]!), convIds);
    const perClientId = new Map<string, number>();
    for (const m of stored.values()) perClientId.set(`${m.senderId}/${m.clientMessageId}`, (perClientId.get(`${m.senderId}/${m.clientMessageId}`) ?? 0) + 1);
    assert.deepEqual([...perClientId].filter(([, n]) => n > 1), [], "no client_message_id stored twice");
    assert.equal(stored.size, records.length, `every send is stored once (${failed.length} retried after failing: ${failureSummary(failed)})`);
    const lost = records.filter((r) => stored.get(key(r.conversationId, r.message!.seq))?.id !== r.message!.id);
    assert.deepEqual(lost.map((r) => r.clientMessageId).slice(0, 10), [], "every acknowledged send is stored as acknowledged");

    // Every subscriber ends with exactly the stored messages.
    const counts = () => subscribers.map((s) => `${s.label}: ${s.received()}${s.endings.length ? ` (reopened after ${s.endings.join("; ")})` : ""}`).join(", ");
    await eventually(async () => subscribers.every((s) => s.received() >= stored.size), `every subscriber has all ${stored.size} messages`, 20_000).catch(
      (error: unknown) => assert.fail(`${String(error)}; they have ${counts()}`),
    );
    for (const sub of subscribers) {
      await sub.stop();
      assertReceivedExactly(sub.ledger, stored, sub.endings.length ? `resumed after: ${sub.endings.join("; ")}` : "one stream throughout");
    }

    // The killed server comes back and rejoins.
    await natsCluster.restart(victim!);
    const tookMs = Date.now() - started;
    const reopened = subscribers.reduce((n, s) => n + s.endings.length, 0);
    console.log(
      `      ${records.length} sends in ${stormMs} ms, n${victim! + 1} killed ${killedAt - stormStart} ms in, node A moved to n${movedTo! + 1}; ` +
        `${failed.length} send(s) failed and were retried; ${reopened} stream(s) reopened; ${tookMs} ms in all`,
    );
  });
});
