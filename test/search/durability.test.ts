/**
 * The lag from commit to searchable is exported as a metric (issue 7, both modes). And the
 * indexer outlives its node ("a durable JetStream consumer"): a node is killed with SIGKILL
 * in the middle of a send storm, another starts on the same PostgreSQL and NATS, and every
 * message that was committed is found — none lost between commit and index (needs both).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { createTestDatabase, newUsers, type FreshDatabase, type TestServer } from "../helpers/test-server.ts";
import { createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import {
  deleteNatsState,
  multiNodeAvailable,
  natsPrefix,
  spawnNode,
  sharedRealtimeServer,
  testNatsUrl,
  type NodeProcess,
} from "../helpers/realtime.ts";
import { eventually } from "../helpers/feed.ts";
import { uniqueWord, waitForHits } from "./helpers.ts";

/** The value of a sample in the Prometheus text exposition, or undefined. */
function sample(exposition: string, name: string): number | undefined {
  const line = exposition.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe("SearchMessages: the lag metric", () => {
  let server: TestServer;
  before(async () => {
    server = await sharedRealtimeServer();
  });

  async function lagSamples(): Promise<{ count: number; sum: number }> {
    assert.ok(server.metricsPort, "precondition: metrics are served");
    const res = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
    assert.equal(res.status, 200);
    const exposition = await res.text();
    return {
      count: sample(exposition, "parley_search_index_lag_seconds_count") ?? 0,
      sum: sample(exposition, "parley_search_index_lag_seconds_sum") ?? 0,
    };
  }

  it("exports the time from commit to searchable", async () => {
    const [a, b, c] = await newUsers(server, 3, "lag");
    const A = server.clientsFor(a!);
    const conv = await createGroup(A, [b!, c!]);
    const word = uniqueWord("lag");
    const before = await lagSamples();
    const sent = await Promise.all(Array.from({ length: 5 }, (_, i) => sendText(A, conv.id, `${word} ${i}`)));
    await waitForHits(A, { query: word }, sent);

    // The lag may be recorded just after the index write that made the messages searchable.
    let after = before;
    await eventually(async () => {
      after = await lagSamples();
      return after.count - before.count >= 5;
    }, "parley_search_index_lag_seconds counting the 5 indexed messages");
    const sum = after.sum - before.sum;
    assert.ok(sum >= 0 && sum < (after.count - before.count) * 60, `a plausible lag sum (${sum} s)`);
  });
});

describe("SearchMessages: a node killed with SIGKILL in the middle of a send storm", () => {
  let database: FreshDatabase | null = null;
  let prefix = "";
  const nodes: NodeProcess[] = [];
  let env: Record<string, string>;

  before(async function () {
    if (!multiNodeAvailable()) this.skip(); // a second node must share the database and NATS
    database = await createTestDatabase();
    prefix = natsPrefix();
    env = { JWT_SECRET: randomBytes(32).toString("hex"), DATABASE_URL: database!.url, NATS_URL: testNatsUrl()!, NATS_PREFIX: prefix };
  });
  afterEach(function () {
    // On failure, show what the nodes logged: the cause is usually there.
    if (this.currentTest?.state !== "failed") return;
    for (const [i, n] of nodes.entries()) console.error(`--- node ${i} output (tail) ---\n${n.output().slice(-3000)}`);
  });
  after(async () => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
  });

  async function startNode(label: string): Promise<NodeProcess> {
    const node = await spawnNode(env, label);
    nodes.push(node);
    return node;
  }

  it("finds every committed message on the node that takes over", async function () {
    this.timeout(150_000);
    const doomed = await startNode("node A (killed)");
    const [a, b, c] = await newUsers(doomed, 3, "crash");
    const conv = await createGroup(doomed.clientsFor(a!), [b!, c!]);
    const word = uniqueWord("crash");

    // Eight senders until the kill; SIGKILL as soon as 60 sends were acknowledged, so
    // messages are committed but not yet indexed (or even published) when the node dies.
    let acked = 0;
    const KILL_AFTER = 60;
    const sender = async (worker: number) => {
      const clients = doomed.clientsFor([a!, b!, c!][worker % 3]!, worker % 2 ? "grpc" : "connect");
      for (let i = 0; ; i++) {
        try {
          await sendText(clients, conv.id, `${word} w${worker} n${i}`);
        } catch {
          return; // the node is gone
        }
        if (++acked === KILL_AFTER) doomed.child.kill("SIGKILL");
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => sender(w)));
    const exit = await doomed.exited;
    assert.equal(exit.signal, "SIGKILL", `node A was killed (exit ${JSON.stringify(exit)})`);

    const survivor = await startNode("node B");
    const B = survivor.clientsFor(b!);
    const stored: Message[] = await listAllForward(B, conv.id);
    assert.ok(stored.length >= KILL_AFTER, `every acknowledged send is stored (${stored.length})`);
    // Deliveries the dead node had fetched but not acknowledged come back only after the
    // consumers' ack wait (10 s in src/workers/jetstream-runtime.ts), so allow for that.
    await waitForHits(B, { query: word }, stored, { what: `all ${stored.length} committed messages found after the crash`, timeoutMs: 30_000 });
  });
});
