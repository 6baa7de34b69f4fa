/**
 * The registry across nodes (real PostgreSQL and NATS; skipped otherwise): an operator on one
 * node sees the other node's streams and can end one there, and a node killed with SIGKILL
 * leaves every listing within the registry's TTL.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { EndReason } from "../../gen/parley/v1/event_service_pb.ts";
import { eventually, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { multiNodeAvailable, spawnNode, startCluster, testNatsUrl, type Cluster, type NodeProcess } from "../helpers/realtime.ts";
import { newUsers } from "../helpers/test-server.ts";

/** Short, so the test is quick; the guarantee is the same with the defaults (5 s / 15 s). */
const HEARTBEAT_SECONDS = 1;
const TTL_SECONDS = 3;

async function sessionOf(feed: Feed): Promise<string> {
  return (await feed.waitFor((f) => (f.case === "caughtUp" ? f.value.sessionId : undefined), "caught_up")).value;
}

describe("connection registry across nodes", function () {
  let cluster: Cluster;
  const feeds: Feed[] = [];
  const spawned: NodeProcess[] = [];

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2, (i) => ({ NODE_ID: `reg-${"ab"[i]}-${randomBytes(3).toString("hex")}`, REGISTRY_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS), REGISTRY_NODE_TTL_SECONDS: String(TTL_SECONDS) }));
  });
  afterEach(function () {
    for (const feed of feeds.splice(0)) feed.close();
    if (this.currentTest?.state === "failed") for (const node of spawned) console.error(`--- spawned node output (tail) ---\n${node.output().slice(-3000)}`);
  });
  after(async () => {
    await Promise.allSettled(spawned.map((n) => n.stop()));
    await cluster?.stop();
  });

  it("shows an operator on node A the streams of node B, and EndSession on A ends a stream on B", async () => {
    const [a, b] = cluster.nodes;
    const [alice] = await newUsers(a!, 1, "reg");
    const onB = await openLiveFeed(b!.clientsFor(alice!, "grpc"), { label: "alice@B" });
    const onA = await openLiveFeed(a!.clientsFor(alice!, "connect"), { label: "alice@A" });
    feeds.push(onB, onA);
    const sessionOnB = await sessionOf(onB);
    const operator = a!.clientsFor(`ops-${alice}`, "connect", { roles: ["operator"] });
    await eventually(async () => (await operator.connections.listConnections({ userId: alice! })).connections.length === 2, "both streams listed on A", 1_000);

    const listing = await operator.connections.listConnections({ userId: alice! });
    const nodeOfB = listing.connections.find((c) => c.sessionId === sessionOnB)?.nodeId;
    assert.equal(nodeOfB, b!.env.NODE_ID, "B's stream is listed with B's node id");
    assert.deepEqual(listing.nodes.map((n) => [n.nodeId, n.connections]).sort(), [[a!.env.NODE_ID, 1n], [b!.env.NODE_ID, 1n]].sort(), "one stream on each node");
    const onlyB = await operator.connections.listConnections({ nodeId: nodeOfB! });
    assert.ok(onlyB.connections.every((c) => c.nodeId === nodeOfB) && onlyB.connections.some((c) => c.sessionId === sessionOnB), "the node filter");

    await operator.connections.endSession({ sessionId: sessionOnB });
    await onB.waitFor((f) => (f.case === "ending" && f.value.reason === EndReason.SESSION_ENDED ? true : undefined), "SESSION_ENDED on B");
    await onA.waitForEvent((e) => e.kind.case === "sessionEnded" && e.kind.value.sessionId === sessionOnB, "session_ended on A");
    assert.equal(onA.end, undefined, "A's stream stays open");
  });

  it(`drops the streams of a node killed with SIGKILL from every listing within the TTL (${TTL_SECONDS} s)`, async function () {
    this.timeout(60_000);
    const [a, b] = cluster.nodes;
    const victimId = `reg-victim-${randomBytes(3).toString("hex")}`;
    const victim = await spawnNode(
      {
        DATABASE_URL: cluster.databaseUrl,
        NATS_URL: testNatsUrl()!,
        NATS_PREFIX: cluster.prefix,
        JWT_SECRET: cluster.secret,
        NODE_ID: victimId,
        REGISTRY_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
        REGISTRY_NODE_TTL_SECONDS: String(TTL_SECONDS),
      },
      "victim",
    );
    spawned.push(victim);
    const [bob] = await newUsers(a!, 1, "reg");
    const doomed = await openLiveFeed(victim.clientsFor(bob!, "grpc"), { label: "bob@victim" });
    const survivor = await openLiveFeed(b!.clientsFor(bob!, "connect"), { label: "bob@B" });
    feeds.push(doomed, survivor);
    const doomedSession = await sessionOf(doomed);
    const operator = a!.clientsFor(`ops-${bob}`, "grpc", { roles: ["operator"] });
    await eventually(async () => (await operator.connections.listConnections({ userId: bob! })).connections.some((c) => c.sessionId === doomedSession), "the victim's stream listed", 1_000);

    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    await victim.exited;
    const gone = async () => {
      const [byUser, sessions] = await Promise.all([operator.connections.listConnections({ userId: bob! }), a!.clientsFor(bob!).connections.listSessions({})]);
      return !byUser.connections.some((c) => c.nodeId === victimId) && !byUser.nodes.some((n) => n.nodeId === victimId) && !sessions.sessions.some((s) => s.sessionId === doomedSession);
    };
    // Polled every 50 ms; the slack covers the poll and the calls' own time on a busy machine.
    while (!(await gone())) {
      assert.ok(Date.now() - killedAt < (TTL_SECONDS + 3) * 1000, "the killed node's streams are still listed");
      await new Promise((r) => setTimeout(r, 50));
    }
    const goneAfterMs = Date.now() - killedAt;
    assert.ok(goneAfterMs <= TTL_SECONDS * 1000 + 500, `gone ${goneAfterMs} ms after the kill (TTL ${TTL_SECONDS} s)`);
    const left = (await operator.connections.listConnections({ userId: bob! })).connections;
    assert.deepEqual(left.map((c) => c.nodeId), [b!.env.NODE_ID], "the stream on the live node is still listed");
    // The sweep (on any live node, at each heartbeat) deletes the dead node's rows afterwards.
    const db = new pg.Client({ connectionString: cluster.databaseUrl });
    await db.connect();
    try {
      const rowsOf = async (table: string) => Number((await db.query(`SELECT count(*) AS n FROM ${table} WHERE node_id = $1`, [victimId])).rows[0].n);
      await eventually(async () => (await rowsOf("connections")) + (await rowsOf("connection_nodes")) === 0, "the dead node's rows swept", 3_000);
    } finally {
      await db.end();
    }
    console.log(`      (killed node's streams left the listings ${goneAfterMs} ms after SIGKILL; TTL ${TTL_SECONDS} s)`);
  });
});
