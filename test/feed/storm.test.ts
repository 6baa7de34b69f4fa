/**
 * A storm of sends in many conversations (spread over the partitions) to two nodes, while two
 * subscribers disconnect at random — sometimes before their replay is over — and resume from
 * their last cursor on either node over either protocol. Each ends with exactly the database's
 * set of (conversation, seq): none missing, none twice, per-conversation order kept.
 * Needs DATABASE_URL and NATS; skipped otherwise.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { partitionOf } from "../../src/log/partitions.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { describeError, openFeed, type Feed } from "../helpers/feed.ts";
import { assertReceivedExactly, DeliveryLedger, failureSummary, sendLoop, storedMessages } from "../helpers/ledger.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";

const PARTITIONS = 8;
/** The most reconnects one subscriber makes (the storm normally ends well before). */
const MAX_RECONNECTS = 400;

describe("a multi-conversation storm across two nodes with subscribers disconnecting at random", function () {
  this.timeout(30_000);
  let cluster: Cluster;
  let nodes: [TestServer, TestServer];
  const open: Feed[] = [];
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2, { EVENT_PARTITIONS: String(PARTITIONS) });
    nodes = cluster.nodes as [TestServer, TestServer];
  });
  after(async () => {
    for (const f of open) f.close();
    await cluster?.stop();
  });

  it("ends with exactly the database's (conversation, seq) set for each subscriber: 0 missing, 0 duplicate", async function () {
    this.timeout(45_000);
    const [s1, s2, p1, p2, p3, p4] = await newUsers(nodes[0], 6, "storm");
    const subscribers = [s1!, s2!];
    const senders = [p1!, p2!, p3!, p4!];
    // Twelve conversations over at least five partitions (bounded: 60 made).
    const convs: string[] = [];
    const partitions = new Set<number>();
    for (let i = 0; i < 60 && (convs.length < 12 || partitions.size < 5); i++) {
      const g = await createGroup(nodes[i % 2]!.clientsFor(senders[i % 4]!, "grpc"), [...subscribers, ...senders.filter((_, j) => j !== i % 4)], `s${i}`);
      convs.push(g.id);
      partitions.add(partitionOf(g.id, PARTITIONS));
    }
    assert.ok(partitions.size >= 5, `precondition: conversations in at least 5 partitions (got ${partitions.size})`);

    // The first streams are live before the first send: everything sent is owed to them.
    const first = async (userId: string, startNode: 0 | 1, protocol: Protocol) => {
      const feed = openFeed(nodes[startNode].clientsFor(userId, protocol), { label: `${userId}#0@${"AB"[startNode]}/${protocol}` });
      open.push(feed);
      await feed.ready();
      return feed;
    };
    const firstFeeds = [await first(s1!, 0, "grpc"), await first(s2!, 1, "connect")];
    let done = false;
    const storm = Promise.all(
      senders.map((id, i) =>
        sendLoop(() => nodes[i % 2]!.clientsFor(id, MAIN_PROTOCOLS[Math.floor(i / 2) % 2]!), `${id}@${"AB"[i % 2]}`, {
          conversationIds: convs,
          count: 60,
          concurrency: 2,
        }),
      ),
    ).finally(() => (done = true));

    // Each subscriber: read for a random while (0–150 ms: often before caught_up), disconnect,
    // resume from the last cursor on a random node over a random protocol.
    const hop = async (userId: string, initial: Feed): Promise<{ ledger: DeliveryLedger; feed: Feed; reconnects: number; errors: string[]; midReplay: number }> => {
      const ledger = new DeliveryLedger(userId);
      const errors: string[] = [];
      let feed = initial;
      let reconnects = 0;
      let midReplay = 0;
      while (!done && reconnects < MAX_RECONNECTS) {
        const until = Date.now() + randomInt(0, 150);
        while (!done && !feed.end && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
        if (feed.lastCursor && !feed.received.some((r) => r.frame.case === "caughtUp")) midReplay++;
        feed.close();
        if (feed.end?.error) errors.push(`${feed.label}: ${describeError(feed.end.error)}`);
        ledger.absorb(feed);
        reconnects++;
        const n = randomInt(2);
        const protocol: Protocol = MAIN_PROTOCOLS[randomInt(2)]!;
        feed = openFeed(nodes[n]!.clientsFor(userId, protocol), { cursor: feed.lastCursor, label: `${userId}#${reconnects}@${"AB"[n]}/${protocol}` });
        open.push(feed);
      }
      return { ledger, feed, reconnects, errors, midReplay };
    };
    const hoppers = await Promise.all([hop(s1!, firstFeeds[0]!), hop(s2!, firstFeeds[1]!)]);
    const records = (await storm).flat();
    assert.equal(records.filter((r) => r.error).length, 0, `every send succeeded: ${failureSummary(records)}`);
    const stored = await storedMessages(nodes[1].clientsFor(s1!), convs);
    assert.equal(stored.size, records.length, "precondition: the database has every acknowledged send");

    for (const h of hoppers) {
      const count = () => h.ledger.keys().size + h.feed.events.filter((e) => e.kind.case === "messageCreated").length;
      await h.feed.caughtUp(15_000);
      const complete = await h.feed.waitUntil(() => count() >= stored.size, `all ${stored.size} messages for ${h.ledger.label}`, 15_000).then(
        () => true,
        () => false,
      );
      if (!complete) {
        // Report exactly what is missing (assertReceivedExactly below names it).
        h.feed.close();
        h.ledger.absorb(h.feed);
        assertReceivedExactly(h.ledger, stored, `${h.reconnects} reconnects, ${h.midReplay} before caught_up; incomplete after 15 s`);
      }
      // A moment more, so a late duplicate would be seen too.
      await new Promise((r) => setTimeout(r, 300));
      h.feed.close();
      h.ledger.absorb(h.feed);
      assert.deepEqual(h.errors, [], `${h.ledger.label}: no stream failed`);
      assert.ok(h.reconnects >= 10, `${h.ledger.label}: at least 10 random disconnects during the storm (got ${h.reconnects})`);
      assertReceivedExactly(h.ledger, stored, `${h.reconnects} reconnects, ${h.midReplay} before caught_up`);
    }
  });
});
