/**
 * Flow control (issue 4, "Flow control"): a reader that stops reading is ended with
 * END_REASON_SLOW_CONSUMER and a resume cursor once it is FEED_BUFFER_EVENTS behind, and never
 * slows the sender or the other readers; stopping a node (what main does on SIGTERM) ends its
 * streams with END_REASON_SERVER_DRAINING and a cursor. Resuming from either cursor loses nothing.
 *
 * The slow reader is a gRPC stream on a bare HTTP/2 connection of its own that the test stops
 * reading (raw-grpc.ts; the connect-node client would buffer everything in memory): HTTP/2 flow
 * control then holds the server's writes after about 64 KiB, so with 200 messages of 8 KiB the
 * server's per-stream buffer must overflow.
 *
 * Draining, with DATABASE_URL and NATS: two nodes; the sender uses node B while node A stops, and
 * the subscribers resume on node B. Otherwise one node on a PGlite directory (or a PostgreSQL
 * database) stops in the middle of the sends and a new node on the same database takes over: the
 * embedded database cannot be shared by two running nodes. The drain test runs last: it stops the
 * node the slow-consumer test used.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { EndReason } from "../../gen/parley/v1/event_service_pb.ts";
import {
  createTestDatabase,
  MAIN_PROTOCOLS,
  newUsers,
  startTestServer,
  type FreshDatabase,
  type IsolatedClients,
  type TestServer,
} from "../helpers/test-server.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { describeError, endReasonName, messageSeqs, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertReceivedExactly, DeliveryLedger, failureSummary, sendLoop, storedMessages } from "../helpers/ledger.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, realtimeEnv, startCluster, type Cluster } from "../helpers/realtime.ts";
import { rawGrpcSource } from "../helpers/raw-grpc.ts";

/**
 * 50, not smaller: the fast reader shares this process's event loop with the in-process server
 * and the senders, and sends committed together reach the buffers as a burst (with 20 and eight
 * concurrent senders the fast reader was ended too); 200 messages are still four times what a
 * stalled reader can have queued (buffer + ~64 KiB in flight).
 */
// Far below MESSAGES, so the stalled reader must overflow; far above what a reading client
// falls behind by when the process is busy (in embedded mode the test's clients, the server and
// its in-process consumers share one event loop), so the fast reader never does.
const BUFFER_EVENTS = 100;
const MESSAGES = 200;

describe("flow control", () => {
  const feeds: Feed[] = [];
  const connections: IsolatedClients[] = [];
  const servers: TestServer[] = [];
  let cluster: Cluster | undefined;
  let dataDir: string | undefined;
  let prefix: string | undefined;
  let database: FreshDatabase | null = null;
  /** The node the tests use, and that the drain test stops. */
  let server: TestServer;
  /** The node that takes over once `server` has stopped (started then, on one database). */
  let startSuccessor: () => Promise<TestServer>;
  /** Where the drain test sends: a node that stays up, or the stopping one (then the successor). */
  let senderNode: () => TestServer;

  before(async function () {
    this.timeout(60_000);
    const settings = { FEED_BUFFER_EVENTS: String(BUFFER_EVENTS) };
    if (multiNodeAvailable()) {
      cluster = await startCluster(2, settings);
      const [a, b] = cluster.nodes as [TestServer, TestServer];
      server = a;
      startSuccessor = async () => b;
      senderNode = () => b;
    } else {
      // One node at a time on one database: a PGlite directory, or a PostgreSQL database when
      // DATABASE_URL is set but NATS is not.
      dataDir = await mkdtemp(path.join(tmpdir(), "parley-flow-"));
      prefix = natsPrefix();
      database = await createTestDatabase();
      const options = database ? { databaseUrl: database.url } : {};
      const env = realtimeEnv(prefix, { ...settings, PGLITE_PATH: path.join(dataDir, "pglite"), DATA_DIR: dataDir });
      const first = await startTestServer(env, options);
      servers.push(first);
      server = first;
      let successor: TestServer | undefined;
      startSuccessor = async () => {
        if (!successor) {
          // Same database and secret, so tokens and cursors carry over.
          successor = await startTestServer({ ...env, JWT_SECRET: first.secret }, options);
          servers.push(successor);
        }
        return successor;
      };
      senderNode = () => successor ?? first;
    }
  });
  after(async function () {
    this.timeout(30_000);
    for (const f of feeds) f.close();
    for (const c of connections) c.close();
    await Promise.allSettled(servers.map((s) => s.stop()));
    await cluster?.stop();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
  });

  it("ends a reader that stopped reading with SLOW_CONSUMER and a cursor that resumes everything it missed, once, while a fast reader gets everything live", async function () {
    this.timeout(60_000);
    const [a, slow, fast] = await newUsers(server, 3, "flow");
    const conv = await createGroup(server.clientsFor(a!, "grpc"), [slow!, fast!]);
    const own = (id: string) => {
      const c = server.isolatedClientsFor(id, "grpc");
      connections.push(c);
      return c;
    };
    const fastFeed = await openLiveFeed(own(fast!), { label: "fast" });
    const slowSource = rawGrpcSource(server.baseUrl, () => server.tokenFor(slow!));
    const slowFeed = await openLiveFeed(slowSource, { label: "slow" });
    feeds.push(fastFeed, slowFeed);
    slowFeed.pause();
    const slowBefore = slowFeed.received.length;

    const started = Date.now();
    const sender = own(a!);
    const records = await sendLoop(() => sender, "flow", {
      conversationIds: [conv.id],
      count: MESSAGES,
      textBytes: 8 * 1024,
      // One send at a time: the fast reader must keep up with the sender, not outrun a
      // sender that, in embedded mode, shares its event loop and HTTP/2 window updates
      // (with 4 at a time a faster server filled the fast reader's buffer too).
      concurrency: 1,
    });
    const sendMs = Date.now() - started;
    assert.equal(records.filter((r) => r.error).length, 0, `every send succeeded while a reader stalled; failures: ${failureSummary(records)}`);

    const all = Array.from({ length: MESSAGES }, (_, i) => BigInt(i + 1));
    await fastFeed.waitUntil(() => messageSeqs(fastFeed, conv.id).length >= MESSAGES, `all ${MESSAGES} messages on the fast stream`, 15_000);
    assert.deepEqual(messageSeqs(fastFeed, conv.id), all, "the fast reader got every message once, in order");
    assert.equal(fastFeed.end, undefined, "the fast reader's stream is still open");
    assert.ok(
      slowFeed.received.length <= slowBefore + 1,
      `the slow reader really did not read (${slowFeed.received.length - slowBefore} frames during the storm)`,
    );

    // Now the slow reader reads what was sent to it: some messages, then the ending frame.
    slowFeed.resume();
    const { value: ending, index: endingAt } = await slowFeed.waitFor(
      (f) => (f.case === "ending" ? f.value : undefined),
      `ending(SLOW_CONSUMER) after falling ${MESSAGES} events behind with FEED_BUFFER_EVENTS=${BUFFER_EVENTS} (sends took ${sendMs} ms)`,
      { timeoutMs: 15_000 },
    );
    assert.equal(ending.reason, EndReason.SLOW_CONSUMER, `reason ${endReasonName(ending.reason)}`);
    assert.ok(ending.cursor, "the ending frame carries a resume cursor");
    const end = await slowFeed.ended("after the ending frame");
    assert.equal(end.error, null, `the stream ends cleanly after the ending frame${end.error ? `: ${describeError(end.error)}` : ""}`);
    assert.equal(endingAt, slowFeed.received.length - 1, `nothing after the ending frame; got ${slowFeed.summary()}`);
    const beforeEnding = messageSeqs(slowFeed, conv.id);
    assert.ok(beforeEnding.length < MESSAGES, `the slow reader was ended before it got everything (got ${beforeEnding.length})`);
    assert.deepEqual(beforeEnding, all.slice(0, beforeEnding.length), "what arrived before the ending is a gapless prefix");

    const resumed = openFeed(slowSource, { cursor: ending.cursor, label: "slow/resumed" });
    feeds.push(resumed);
    await resumed.caughtUp(15_000);
    const rest = messageSeqs(resumed, conv.id);
    assert.deepEqual([...beforeEnding, ...rest], all, "before the ending plus the resume: every message exactly once, in order");
  });

  it("ends open streams with SERVER_DRAINING and a cursor from which another node resumes without loss when a node stops", async function () {
    this.timeout(60_000);
    const stopping = server;
    const [s, p, q] = await newUsers(stopping, 3, "drain");
    const conv = await createGroup(stopping.clientsFor(p!), [s!, q!]);
    const subscribers = MAIN_PROTOCOLS.map((protocol) => {
      const c = stopping.isolatedClientsFor(s!, protocol);
      connections.push(c);
      return { protocol, clients: c, ledger: new DeliveryLedger(`s/${protocol}`) };
    });
    const draining = await Promise.all(
      subscribers.map((sub) => openLiveFeed(sub.clients, { label: `s/${sub.protocol}@stopping` })),
    );
    feeds.push(...draining);

    // Sends before, during and (in the cluster) after the stop.
    let sent = 0;
    let sending = true;
    const sends = sendLoop(() => senderNode().clientsFor(p!, "grpc"), "drain", {
      conversationIds: [conv.id],
      count: 120,
      onAck: () => {
        sent++;
      },
      stopOnError: !multiNodeAvailable(),
    }).finally(() => (sending = false));
    while (sent < 40 && sending) await new Promise((r) => setTimeout(r, 5));
    assert.ok(sent >= 40, "40 sends were acknowledged before the stop");
    const stopped = stopping.stop();
    stopped.catch(() => undefined);

    const endings = await Promise.all(
      draining.map(async (feed) => {
        const { value } = await feed.waitFor(
          (f) => (f.case === "ending" ? f.value : undefined),
          "ending(SERVER_DRAINING) while the node stops",
          { timeoutMs: 10_000 },
        );
        const end = await feed.ended("after the ending frame");
        assert.equal(end.error, null, `${feed.label}: the stream ends cleanly after the ending frame${end.error ? `: ${describeError(end.error)}` : ""}`);
        return value;
      }),
    );
    for (const [i, ending] of endings.entries()) {
      assert.equal(ending.reason, EndReason.SERVER_DRAINING, `${draining[i]!.label}: reason ${endReasonName(ending.reason)}`);
      assert.ok(ending.cursor, `${draining[i]!.label}: the ending frame carries a cursor`);
    }
    for (const c of connections) c.close();
    await stopped;

    const successor = await startSuccessor();
    const records = await sends;
    if (!multiNodeAvailable()) {
      // The node that stopped refused or dropped the sends that were still coming; finish on
      // the successor so there is something to receive live after the resume.
      await sendLoop(() => successor.clientsFor(p!, "grpc"), "after", { conversationIds: [conv.id], count: 10 });
    } else {
      assert.equal(records.filter((r) => r.error).length, 0, "the sends to the other node all succeeded");
    }
    const stored = await storedMessages(successor.clientsFor(s!), [conv.id]);

    for (const [i, sub] of subscribers.entries()) {
      sub.ledger.absorb(draining[i]!);
      const resumed = openFeed(successor.clientsFor(s!, sub.protocol), { cursor: endings[i]!.cursor, label: `s/${sub.protocol}@successor` });
      feeds.push(resumed);
      await resumed.waitUntil(
        () => sub.ledger.keys().size + resumed.events.filter((e) => e.kind.case === "messageCreated").length >= stored.size,
        `all ${stored.size} messages after resuming with the ending cursor`,
        15_000,
      ).catch(() => undefined);
      resumed.close();
      sub.ledger.absorb(resumed);
      assertReceivedExactly(sub.ledger, stored, "before the ending plus after the resume");
    }
  });
});
