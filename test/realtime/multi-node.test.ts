/**
 * Several nodes on one PostgreSQL and one NATS (issue 4, "Multi-node"): live delivery crosses
 * nodes, a client may resume on any node, typing and presence are cluster-wide.
 * Runs twice: on the one NATS server, and on a three-server NATS cluster with streams at three
 * replicas where each Parley node talks to a different server.
 * Needs DATABASE_URL and NATS (the embedded database cannot be shared), and nats-server for the
 * cluster run; skipped otherwise.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { connect } from "nats";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { describeError, eventually, isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertReceivedExactly, DeliveryLedger, failureSummary, sendLoop, storedMessages } from "../helpers/ledger.ts";
import { natsClusterAvailable, startNatsCluster, type NatsCluster } from "../helpers/nats-cluster.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";

/** A bus the two Parley nodes share, and how to start them on it. */
interface BusSetup {
  readonly name: string;
  available(): boolean;
  start(): Promise<Cluster>;
  stop(): Promise<void>;
}

let natsCluster: NatsCluster | undefined;
const BUSES: BusSetup[] = [
  { name: "NATS", available: multiNodeAvailable, start: () => startCluster(2), stop: async () => undefined },
  {
    name: "a 3-server NATS cluster, streams at R3",
    available: () => Boolean(process.env.DATABASE_URL) && natsClusterAvailable(),
    async start() {
      natsCluster = await startNatsCluster();
      const { urls, url } = natsCluster;
      // Node i talks to server i (it learns the others from the cluster, for reconnecting).
      const cluster = await startCluster(2, (i) => ({ NATS_URL: urls[i % urls.length], NATS_STREAM_REPLICAS: "3" }), { natsUrl: url });
      await assertStreamsReplicated(url, cluster.prefix, 3);
      return cluster;
    },
    async stop() {
      await natsCluster?.stop();
      natsCluster = undefined;
    },
  },
];

/** Fails unless every stream and bucket Parley made under the prefix has this many replicas. */
async function assertStreamsReplicated(servers: string, prefix: string, replicas: number): Promise<void> {
  const nc = await connect({ servers: servers.split(","), timeout: 2_000 });
  try {
    const found: string[] = [];
    for await (const si of (await nc.jetstreamManager()).streams.list()) {
      const mine = si.config.name.toLowerCase().includes(prefix) || si.config.subjects?.some((s) => s.toLowerCase().includes(prefix));
      if (mine) found.push(`${si.config.name}:R${si.config.num_replicas}`);
    }
    assert.ok(found.length >= 4, `the event, work and push streams and the presence bucket exist: ${found.join(" ")}`);
    assert.deepEqual(found.filter((f) => !f.endsWith(`:R${replicas}`)), [], `every stream at R${replicas}`);
  } finally {
    await nc.close();
  }
}

for (const bus of BUSES) describe(`multi-node (PostgreSQL + ${bus.name})`, function () {
  let cluster: Cluster;
  let nodeA: TestServer;
  let nodeB: TestServer;
  const feeds: Feed[] = [];
  before(async function () {
    if (!bus.available()) this.skip();
    this.timeout(60_000);
    cluster = await bus.start();
    [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });
  after(async function () {
    this.timeout(30_000);
    try {
      await cluster?.stop();
    } finally {
      await bus.stop();
    }
  });

  const node = (n: "A" | "B") => (n === "A" ? nodeA : nodeB);
  async function liveOn(n: "A" | "B", userId: string, protocol: "grpc" | "connect" = "grpc", cursor?: string): Promise<Feed> {
    const feed = await openLiveFeed(node(n).clientsFor(userId, protocol), { cursor, label: `${userId}@${n}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    it(`delivers live across nodes both ways over ${protocol}`, async () => {
      const [x, y, z] = await newUsers(nodeA, 3, "cross");
      const conv = await createGroup(nodeA.clientsFor(x!, protocol), [y!, z!]);
      const fxA = await liveOn("A", x!, protocol);
      const fyB = await liveOn("B", y!, protocol);
      const fromA = await sendText(nodeA.clientsFor(x!, protocol), conv.id, "sent on A");
      await fyB.waitForEvent(isMessage(conv.id, fromA.seq), "a message sent on node A, on a stream on node B");
      const fromB = await sendText(nodeB.clientsFor(y!, protocol), conv.id, "sent on B");
      await fxA.waitForEvent(isMessage(conv.id, fromB.seq), "a message sent on node B, on a stream on node A");
      await fxA.waitForEvent(isMessage(conv.id, fromA.seq), "the sender's own message on its node");
    });
  }

  it("delivers membership changes across nodes, and the joined conversation's messages without resubscribing", async () => {
    const [a, b, c, d] = await newUsers(nodeA, 4, "cross-join");
    const conv = await createGroup(nodeA.clientsFor(a!), [b!, c!]);
    const fdB = await liveOn("B", d!);
    await nodeA.clientsFor(a!).conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
    await fdB.waitForEvent(
      (e) => e.conversationId === conv.id && e.kind.case === "memberAdded" && e.kind.value.member?.userId === d,
      "member_added (done on node A) on d's stream on node B",
    );
    const m = await sendText(nodeA.clientsFor(a!), conv.id, "welcome from A");
    await fdB.waitForEvent(isMessage(conv.id, m.seq), "the next message of the joined conversation");
    await nodeA.clientsFor(a!).conversations.removeMember({ conversationId: conv.id, userId: d! });
    const { index: removedAt } = await fdB.waitForEvent(
      (e) => e.conversationId === conv.id && e.kind.case === "memberRemoved" && e.kind.value.userId === d,
      "member_removed on node B",
    );
    await sendText(nodeA.clientsFor(a!), conv.id, "d is gone");
    const fenceConv = await createDirect(nodeA.clientsFor(a!), d!);
    const fence = await sendText(nodeA.clientsFor(a!), fenceConv.id, "fence");
    await fdB.waitForEvent(isMessage(fenceConv.id, fence.seq), "the fence message");
    const leaked = fdB.received.slice(removedAt + 1).filter((r) => r.frame.case === "event" && r.frame.value.conversationId === conv.id);
    assert.equal(leaked.length, 0, `nothing of the conversation after member_removed; got ${fdB.summary()}`);
  });

  it("shares typing and presence across nodes", async () => {
    const [u, p, q] = await newUsers(nodeA, 3, "cross-presence");
    const conv = await createGroup(nodeA.clientsFor(p!), [u!, q!]);
    const fpA = await liveOn("A", p!);
    const fuB = await liveOn("B", u!);
    await eventually(
      async () => (await nodeA.clientsFor(p!).events.getPresence({ userIds: [u!] })).presences[0]?.online === true,
      "u (streaming on node B) online in GetPresence on node A",
    );
    await fpA.waitForEvent(
      (e) => e.kind.case === "presenceChanged" && e.kind.value.userId === u && e.kind.value.online,
      "presence_changed(u online) on node A",
    );
    await nodeA.clientsFor(p!).events.sendTyping({ conversationId: conv.id });
    await fuB.waitForEvent((e: Event) => e.kind.case === "typing" && e.kind.value.userId === p, "typing sent on A, on node B");
    fuB.close();
    await eventually(
      async () => (await nodeA.clientsFor(p!).events.getPresence({ userIds: [u!] })).presences[0]?.online === false,
      "u offline on node A after closing its stream on node B",
    );
  });

  it("gives every subscriber exactly the database's messages during a storm sent to both nodes, including one that hops between nodes", async function () {
    this.timeout(60_000);
    const [s1, s2, s3, p1, p2, p3, p4] = await newUsers(nodeA, 7, "cross-storm");
    const subs = [s1!, s2!, s3!];
    const g1 = await createGroup(nodeA.clientsFor(p1!), [...subs, p2!]);
    const g2 = await createGroup(nodeB.clientsFor(p3!), [...subs, p4!]);
    const g3 = await createGroup(nodeA.clientsFor(p2!), [...subs, p1!, p3!, p4!]);
    const convIds = [g1.id, g2.id, g3.id];

    const onA = await liveOn("A", s1!, "grpc");
    const onB = await liveOn("B", s2!, "connect");
    let hopper = openFeed(nodeA.clientsFor(s3!, "grpc"), { label: "s3#0@A" });
    await hopper.ready();
    const hopLedger = new DeliveryLedger("s3 (hopping between nodes)");

    let done = false;
    const storm = Promise.all([
      sendLoop(() => nodeA.clientsFor(p1!, "grpc"), "p1@A", { conversationIds: [g1.id, g3.id], count: 60 }),
      sendLoop(() => nodeB.clientsFor(p2!, "connect"), "p2@B", { conversationIds: [g1.id, g3.id], count: 60 }),
      sendLoop(() => nodeA.clientsFor(p3!, "connect"), "p3@A", { conversationIds: [g2.id, g3.id], count: 60 }),
      sendLoop(() => nodeB.clientsFor(p4!, "grpc"), "p4@B", { conversationIds: [g2.id, g3.id], count: 60 }),
    ]).finally(() => (done = true));

    let hops = 0;
    const errors: string[] = [];
    while (!done) {
      const until = Date.now() + randomInt(20, 200);
      while (!done && !hopper.end && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      hopper.close();
      if (hopper.end?.error) errors.push(`${hopper.label}: ${describeError(hopper.end.error)}`);
      hopLedger.absorb(hopper);
      hops++;
      const n = hops % 2 ? "B" : "A";
      hopper = openFeed(node(n).clientsFor(s3!, hops % 3 ? "grpc" : "connect"), { cursor: hopper.lastCursor, label: `s3#${hops}@${n}` });
    }
    const records = (await storm).flat();
    assert.equal(records.filter((r) => r.error).length, 0, `every send succeeded: ${failureSummary(records)}`);
    const stored = await storedMessages(nodeB.clientsFor(s1!), convIds);
    assert.equal(stored.size, records.length);

    const countIn = (f: Feed) => f.events.filter((e) => e.kind.case === "messageCreated").length;
    await onA.waitUntil(() => countIn(onA) >= stored.size, `all ${stored.size} messages on node A`, 15_000);
    await onB.waitUntil(() => countIn(onB) >= stored.size, `all ${stored.size} messages on node B`, 15_000);
    await hopper.caughtUp(15_000);
    await hopper.waitUntil(
      () => hopLedger.keys().size + countIn(hopper) >= stored.size,
      `all ${stored.size} messages for the hopping subscriber`,
      15_000,
    );
    hopper.close();
    hopLedger.absorb(hopper);

    for (const [feed, label] of [[onA, "s1 on node A"], [onB, "s2 on node B"]] as const) {
      const ledger = new DeliveryLedger(label);
      ledger.absorb(feed);
      assertReceivedExactly(ledger, stored);
    }
    assert.deepEqual(errors, [], "no stream failed");
    assertReceivedExactly(hopLedger, stored, `${hops} hops`);
  });
});
