/**
 * kill -9 (issue 4, "No lost, no doubled events"): two nodes as child processes on one
 * PostgreSQL and NATS; senders on node B, a subscriber on node A; node B is SIGKILLed in the
 * middle of a send storm. Every acknowledged send is stored exactly once and reaches the
 * subscriber (after a resume from its last cursor if need be), with no duplicate; the sends cut
 * off by the crash, retried on node A with the same client_message_id, are stored once too.
 * Needs DATABASE_URL and NATS; skipped otherwise.
 */
import assert from "node:assert/strict";
import { createTestDatabase, newUsers, type FreshDatabase } from "../helpers/test-server.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import {
  assertReceivedExactly,
  DeliveryLedger,
  failureSummary,
  key,
  sendLoop,
  storedMessages,
  type SendRecord,
} from "../helpers/ledger.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, printNodeOutputs, sharedNodeEnv, spawnNode, type NodeProcess } from "../helpers/realtime.ts";

describe("a node killed with SIGKILL in the middle of a send storm", function () {
  let database: FreshDatabase | null = null;
  let prefix = "";
  const nodes: NodeProcess[] = [];
  const feeds: Feed[] = [];
  let nodeA: NodeProcess;
  let nodeB: NodeProcess;

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    database = await createTestDatabase();
    prefix = natsPrefix();
    const env = sharedNodeEnv(database!.url, prefix);
    nodeA = await spawnNode(env, "node A");
    nodes.push(nodeA);
    nodeB = await spawnNode(env, "node B");
    nodes.push(nodeB);
  });
  afterEach(function () {
    // On failure, show what the nodes logged: the cause is usually there.
    if (this.currentTest?.state !== "failed") return;
    printNodeOutputs(nodes);
  });
  after(async () => {
    for (const f of feeds) f.close();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
  });

  it("stores every acknowledged send once and delivers it to the subscriber on the surviving node", async function () {
    this.timeout(90_000);
    const [s, p1, p2, p3] = await newUsers(nodeA, 4, "crash");
    const g1 = await createGroup(nodeA.clientsFor(p1!), [s!, p2!, p3!]);
    const g2 = await createGroup(nodeA.clientsFor(p2!), [s!, p1!, p3!]);
    const convIds = [g1.id, g2.id];
    const ledger = new DeliveryLedger("s on node A");
    let feed = await openLiveFeed(nodeA.clientsFor(s!, "grpc"), { label: "s@A" });
    feeds.push(feed);

    // Senders on node B; SIGKILL once 150 sends have been acknowledged.
    let acked = 0;
    let killed = false;
    const KILL_AFTER = 150;
    const onAck = () => {
      if (++acked === KILL_AFTER && !killed) {
        killed = true;
        nodeB.child.kill("SIGKILL");
      }
    };
    const records: SendRecord[] = (
      await Promise.all(
        [p1!, p2!, p3!].map((id, i) =>
          sendLoop(() => nodeB.clientsFor(id, i % 2 ? "connect" : "grpc"), `${id}@B`, {
            conversationIds: convIds,
            count: 400,
            concurrency: 4,
            stopOnError: true,
            onAck,
          }),
        ),
      )
    ).flat();
    const exit = await nodeB.exited;
    assert.equal(exit.signal, "SIGKILL", `node B was killed (exit ${JSON.stringify(exit)})`);
    const ackedRecords = records.filter((r) => r.message);
    const cutOff = records.filter((r) => r.error);
    assert.ok(ackedRecords.length >= KILL_AFTER, `at least ${KILL_AFTER} sends were acknowledged before the kill`);
    assert.ok(cutOff.length > 0, `some sends were cut off by the kill (${failureSummary(records)})`);

    // The cut-off sends are retried on node A with the same client_message_id.
    for (const r of cutOff) {
      const res = await nodeA.clientsFor(
        [p1!, p2!, p3!].find((id) => r.text.startsWith(`${id}@B`))!,
      ).messages.sendMessage({ conversationId: r.conversationId, clientMessageId: r.clientMessageId, content: { case: "text", value: r.text } });
      r.message = res.message;
    }

    const stored = await storedMessages(nodeA.clientsFor(s!), convIds);
    const byClientId = new Map<string, number>();
    for (const m of stored.values()) byClientId.set(`${m.senderId}/${m.clientMessageId}`, (byClientId.get(`${m.senderId}/${m.clientMessageId}`) ?? 0) + 1);
    const doubled = [...byClientId].filter(([, n]) => n > 1);
    assert.deepEqual(doubled, [], "no client_message_id stored twice");
    assert.equal(stored.size, records.length, `every send is stored exactly once (${ackedRecords.length} acknowledged, ${cutOff.length} retried)`);
    const lost = ackedRecords.filter((r) => {
      const m = stored.get(key(r.conversationId, r.message!.seq));
      return !m || m.id !== r.message!.id;
    });
    assert.deepEqual(lost.map((r) => r.clientMessageId).slice(0, 10), [], "every acknowledged send is stored as acknowledged");

    // Delivery: live if the surviving node made up for the dead one, otherwise after one resume.
    const countIn = (f: Feed) => new Set(f.events.filter((e) => e.kind.case === "messageCreated").map((e) => e.id)).size;
    let resumed = false;
    try {
      await feed.waitUntil(() => countIn(feed) >= stored.size, `all ${stored.size} messages live`, 15_000);
    } catch {
      resumed = true;
      feed.close();
      ledger.absorb(feed);
      feed = openFeed(nodeA.clientsFor(s!, "connect"), { cursor: feed.lastCursor, label: "s@A/resumed" });
      feeds.push(feed);
      await feed.caughtUp(15_000);
      await feed.waitUntil(() => ledger.keys().size + countIn(feed) >= stored.size, `all ${stored.size} messages after a resume`, 10_000).catch(() => undefined);
    }
    feed.close();
    ledger.absorb(feed);
    assertReceivedExactly(ledger, stored, resumed ? "after one resume from the last cursor" : "live");
  });
});
