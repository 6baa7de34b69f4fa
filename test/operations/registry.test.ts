/**
 * The connection registry: every live Subscribe stream is listed with its user,
 * device, node, protocol and client version within a second of connecting; a user lists and
 * ends their own sessions (that stream alone ends with END_REASON_SESSION_ENDED); operators
 * list by user and node with the count per node; a node killed with SIGKILL has its streams
 * dropped within REGISTRY_NODE_TTL_SECONDS. Through the generated clients over gRPC and
 * Connect, and once through the independent grpc-js client. The two-node part needs
 * DATABASE_URL and NATS and is skipped otherwise.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Connection, ListConnectionsResponse } from "../../gen/parley/v1/connection_service_pb.ts";
import { EndReason } from "../../gen/parley/v1/event_service_pb.ts";
import { MAIN_PROTOCOLS, createTestDatabase, newUsers, uniqueId, type FreshDatabase, type Protocol, type RemoteServer, type TestServer } from "../helpers/test-server.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, printNodeOutputs, sharedNodeEnv, spawnNode, startRealtimeServer, type NodeProcess } from "../helpers/realtime.ts";
import { endReasonName, openFeed, type Feed } from "../helpers/feed.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { absentIdLike } from "../helpers/fixtures.ts";
import { call, expectStatus, loadServices, type ServiceClient } from "../helpers/grpc-js.ts";

/** The registry must list a stream this soon after its caught_up frame. */
const LISTED_WITHIN_MS = 1_000;
const OPERATOR = { roles: ["operator"] as const };

/** Headers a client sends with Subscribe. */
interface ClientHeaders {
  deviceId?: string;
  clientVersion?: string;
  userAgent?: string;
}

/** A Subscribe stream and the session id its caught_up frame named. */
interface Session {
  feed: Feed;
  sessionId: string;
  /** When caught_up arrived. */
  liveAt: number;
  openedAt: number;
}

/** Opens a Subscribe stream with the headers and waits for caught_up (which names the session). */
async function openSession(server: RemoteServer, userId: string, protocol: Protocol, headers: ClientHeaders, label: string): Promise<Session> {
  const clients = server.clientsFor(userId, protocol);
  const h: Record<string, string> = {};
  if (headers.deviceId !== undefined) h["x-parley-device-id"] = headers.deviceId;
  if (headers.clientVersion !== undefined) h["x-parley-client-version"] = headers.clientVersion;
  if (headers.userAgent !== undefined) h["user-agent"] = headers.userAgent;
  const openedAt = Date.now();
  const feed = openFeed((cursor, signal) => clients.events.subscribe({ cursor }, { signal, timeoutMs: 0, headers: h }), { label: `${label}/${protocol}` });
  try {
    const { value: sessionId } = await feed.waitFor((f) => (f.case === "caughtUp" ? f.value.sessionId : undefined), "caught_up frame");
    assert.ok(sessionId, `${feed.label}: caught_up names the session (session_id is set)`);
    return { feed, sessionId, liveAt: Date.now(), openedAt };
  } catch (err) {
    feed.close();
    throw err;
  }
}

/** Polls until `check` returns a value; returns it with the time it took. Fails after the deadline. */
async function pollFor<T>(check: () => Promise<T | undefined>, what: string, timeoutMs: number, intervalMs = 25): Promise<{ value: T; at: number }> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return { value, at: Date.now() };
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) assert.fail(`not ${what} within ${timeoutMs} ms${lastError ? `; last error: ${String(lastError)}` : ""}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The session ids of a list, in order. */
const ids = (cs: readonly Connection[]) => cs.map((c) => c.sessionId);

/** Waits for the ending frame and asserts SESSION_ENDED, then that the stream is over. */
async function assertEndedBySession(s: Session): Promise<void> {
  const { value: reason } = await s.feed.waitFor((f) => (f.case === "ending" ? f.value.reason : undefined), "an ending frame");
  assert.equal(reason, EndReason.SESSION_ENDED, `${s.feed.label}: ending reason ${endReasonName(reason)}`);
  const end = await s.feed.ended("after the ending frame");
  assert.equal(end.error, null, `${s.feed.label}: the stream ends normally after ending (${end.error?.message})`);
}

/** Waits for a heartbeat that arrives after frame index `from`: the stream is still live. */
async function assertStillLive(s: Session, from: number, what: string): Promise<void> {
  await s.feed.waitFor((f, i) => (i >= from && f.case === "heartbeat" ? true : undefined), `a heartbeat (${what})`, { from, timeoutMs: 5_000 });
  const endings = s.feed.received.filter((r) => r.frame.case === "ending");
  assert.deepEqual(endings.map((r) => r.frame.case), [], `${s.feed.label}: no ending frame (${what})`);
}

/** Every connection of a ListConnections walk, and the first page's node counts. */
async function allConnections(list: (pageToken: string) => Promise<ListConnectionsResponse>): Promise<{ connections: Connection[]; pages: ListConnectionsResponse[] }> {
  const pages: ListConnectionsResponse[] = [];
  let token = "";
  for (let i = 0; i < 100; i++) {
    const page = await list(token);
    pages.push(page);
    if (!page.nextPageToken) return { connections: pages.flatMap((p) => p.connections), pages };
    token = page.nextPageToken;
  }
  assert.fail("ListConnections never stopped returning a next_page_token");
}

describe("the connection registry on one node", function () {
  let server: TestServer;
  const sessions: Session[] = [];
  before(async function () {
    this.timeout(60_000);
    server = await startRealtimeServer({ REGISTRY_HEARTBEAT_SECONDS: "1" });
  });
  afterEach(() => {
    for (const s of sessions.splice(0)) s.feed.close();
  });
  after(async () => {
    await server?.stop();
  });

  async function open(userId: string, protocol: Protocol, headers: ClientHeaders, label: string): Promise<Session> {
    const s = await openSession(server, userId, protocol, headers, label);
    sessions.push(s);
    return s;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    it(`lists a ${protocol} stream within a second of connecting, with its user, device, node, protocol and client version`, async () => {
      const [user] = (await newUsers(server, 1, "reg")) as [string];
      const deviceId = uniqueId("device");
      const s = await open(user, protocol, { deviceId, clientVersion: "ios/3.2.1", userAgent: "parley-tests/1.0 (registry)" }, "listed");
      const clients = server.clientsFor(user, protocol);
      const { value: conn, at } = await pollFor(async () => {
        const res = await clients.connections.listSessions({});
        return res.sessions.find((c) => c.sessionId === s.sessionId);
      }, "the stream listed by ListSessions", 5_000);
      assert.ok(at - s.liveAt <= LISTED_WITHIN_MS, `listed ${at - s.liveAt} ms after caught_up (at most ${LISTED_WITHIN_MS} ms)`);
      assert.equal(conn.userId, user, "user_id");
      assert.equal(conn.deviceId, deviceId, "device_id is the x-parley-device-id header");
      assert.equal(conn.clientVersion, "ios/3.2.1", "client_version is the x-parley-client-version header");
      assert.equal(conn.protocol, protocol, "protocol");
      assert.ok(conn.userAgent.includes("parley-tests/1.0 (registry)"), `user_agent is the User-Agent header (got ${JSON.stringify(conn.userAgent)})`);
      assert.ok(conn.nodeId, "node_id is set");
      assert.ok(conn.connectedAt, "connected_at is set");
      const connectedAt = timestampMs(conn.connectedAt);
      assert.ok(connectedAt >= s.openedAt - 2_000 && connectedAt <= at + 2_000, `connected_at ${new Date(connectedAt).toISOString()} is when the stream opened`);
      assert.ok(conn.lastHeartbeatAt, "last_heartbeat_at is set");
      assert.ok(Math.abs(timestampMs(conn.lastHeartbeatAt) - Date.now()) < 10_000, "last_heartbeat_at is recent");

      // The operator's view of the same stream, and the node's count with the user filter applied.
      const byUser = await server.clientsFor(uniqueId("op"), protocol, OPERATOR).connections.listConnections({ userId: user });
      assert.deepEqual(ids(byUser.connections), [s.sessionId], "ListConnections(user_id) lists exactly the user's stream");
      assert.equal(byUser.connections[0]!.deviceId, deviceId);
      assert.equal(byUser.connections[0]!.nodeId, conn.nodeId);
      const node = byUser.nodes.find((n) => n.nodeId === conn.nodeId);
      assert.ok(node, `nodes names the stream's node ${conn.nodeId} (got ${JSON.stringify(byUser.nodes.map((n) => n.nodeId))})`);
      assert.equal(node.connections, 1n, "the node's count has the user filter applied");
      assert.ok(node.lastHeartbeatAt, "the node's last_heartbeat_at is set");
    });
  }

  for (const [protocol, name] of [["grpc-web", "grpc-web"], ["connect-h2", "connect"], ["connect-json", "connect"]] as const) {
    it(`names the protocol of a ${protocol} stream "${name}"`, async () => {
      const [user] = (await newUsers(server, 1, "proto")) as [string];
      const s = await open(user, protocol, {}, "protocol");
      const { value: conn } = await pollFor(async () => (await server.clientsFor(user).connections.listSessions({})).sessions.find((c) => c.sessionId === s.sessionId), "listed", 5_000);
      assert.equal(conn.protocol, name);
    });
  }

  it("leaves the headers empty when a client sends none", async () => {
    const [user] = (await newUsers(server, 1, "reg")) as [string];
    const s = await open(user, "grpc", {}, "bare");
    const { value: conn } = await pollFor(async () => (await server.clientsFor(user, "grpc").connections.listSessions({})).sessions.find((c) => c.sessionId === s.sessionId), "listed", 5_000);
    assert.equal(conn.deviceId, "");
    assert.equal(conn.clientVersion, "");
  });

  for (const protocol of MAIN_PROTOCOLS) {
    it(`lets a user list their own sessions, newest first, and end one: that stream alone ends with SESSION_ENDED (${protocol})`, async () => {
      const [user, other] = (await newUsers(server, 2, "own")) as [string, string];
      const me = server.clientsFor(user, protocol);
      const older = await open(user, "grpc", { deviceId: "phone" }, "older");
      await pollFor(async () => ((await me.connections.listSessions({})).sessions.some((c) => c.sessionId === older.sessionId) ? true : undefined), "older listed", 5_000);
      await new Promise((r) => setTimeout(r, 20));
      const newer = await open(user, "connect", { deviceId: "laptop" }, "newer");
      const theirs = await open(other, protocol, { deviceId: "phone" }, "other user");

      const { value: mine } = await pollFor(async () => {
        const list = (await me.connections.listSessions({})).sessions;
        return list.length === 2 ? list : undefined;
      }, "both of the user's sessions listed", 5_000);
      assert.deepEqual(ids(mine), [newer.sessionId, older.sessionId], "ListSessions: only the caller's own streams, newest first");
      assert.deepEqual(mine.map((c) => c.deviceId), ["laptop", "phone"]);
      const otherList = await pollFor(async () => {
        const list = (await server.clientsFor(other, protocol).connections.listSessions({})).sessions;
        return list.length > 0 ? list : undefined;
      }, "the other user's session listed", 5_000);
      assert.deepEqual(ids(otherList.value), [theirs.sessionId], "another user sees only their own session");

      const newerFrom = newer.feed.received.length;
      const theirsFrom = theirs.feed.received.length;
      await me.connections.endSession({ sessionId: older.sessionId });
      await assertEndedBySession(older);

      // The user's other stream is told which session ended, and stays open.
      const { event } = await newer.feed.waitForEvent((e) => e.kind.case === "sessionEnded", "a session_ended event", { from: newerFrom });
      assert.equal(event.kind.case, "sessionEnded");
      if (event.kind.case === "sessionEnded") {
        assert.equal(event.kind.value.sessionId, older.sessionId, "session_ended names the ended session");
        assert.equal(event.kind.value.byOperator, false, "the user ended it, not an operator");
      }
      await assertStillLive(newer, newer.feed.received.length, "the user's other session is not ended");
      await assertStillLive(theirs, theirsFrom, "another user's session is not ended");
      assert.ok(!theirs.feed.events.some((e) => e.kind.case === "sessionEnded"), "another user gets no session_ended event");

      await pollFor(async () => {
        const list = (await me.connections.listSessions({})).sessions;
        return ids(list).join() === newer.sessionId ? true : undefined;
      }, "the ended session gone from ListSessions (only the other one left)", 5_000);
      await expectCode(me.connections.endSession({ sessionId: older.sessionId }), Code.NotFound);
    });
  }

  it("lets an operator list connections by user and node with the count per node, page through them, and end anyone's session", async () => {
    const [a, b] = (await newUsers(server, 2, "opv")) as [string, string];
    const a1 = await open(a, "grpc", { deviceId: "a1" }, "a1");
    const a2 = await open(a, "connect", { deviceId: "a2" }, "a2");
    const b1 = await open(b, "grpc", { deviceId: "b1" }, "b1");
    const b2 = await open(b, "connect", { deviceId: "b2" }, "b2");
    for (const protocol of MAIN_PROTOCOLS) {
      const op = server.clientsFor(uniqueId("op"), protocol, OPERATOR);
      const { value: ofA } = await pollFor(async () => {
        const res = await op.connections.listConnections({ userId: a });
        return res.connections.length === 2 ? res : undefined;
      }, `a's two streams listed (${protocol})`, 5_000);
      assert.deepEqual(new Set(ids(ofA.connections)), new Set([a1.sessionId, a2.sessionId]), "ListConnections(user_id) lists only that user's streams");
      assert.deepEqual(ids(ofA.connections), [a2.sessionId, a1.sessionId], "newest first");
      const nodeId = ofA.connections[0]!.nodeId;
      assert.deepEqual(ofA.nodes.map((n) => [n.nodeId, n.connections]), [[nodeId, 2n]], "one node, counting the user's two streams");

      // Streams are listed within a second of connecting: b's may not be yet.
      const { value: everyone } = await pollFor(async () => {
        const res = await op.connections.listConnections({ pageSize: 1000 });
        return [a1, a2, b1, b2].every((s) => ids(res.connections).includes(s.sessionId)) ? res : undefined;
      }, "ListConnections() listing all four streams", 5_000);
      const node = everyone.nodes.find((n) => n.nodeId === nodeId);
      assert.ok(node && node.connections >= 4n, `the node counts at least the 4 streams (got ${node?.connections})`);
      const onNode = await op.connections.listConnections({ nodeId, userId: b });
      assert.deepEqual(new Set(ids(onNode.connections)), new Set([b1.sessionId, b2.sessionId]), "node_id and user_id filters combine");

      // Pages of one: every stream once, node counts on the first page only.
      const walk = await allConnections((pageToken) => op.connections.listConnections({ userId: b, pageSize: 1, pageToken }));
      assert.deepEqual(ids(walk.connections), [b2.sessionId, b1.sessionId], "pages of one list each of b's streams once, newest first");
      assert.ok(walk.pages[0]!.nodes.length > 0, "the first page has the node counts");
      for (const p of walk.pages.slice(1)) assert.deepEqual(p.nodes, [], "later pages have none");
    }

    const from = b2.feed.received.length;
    await server.clientsFor(uniqueId("op"), "grpc", OPERATOR).connections.endSession({ sessionId: b1.sessionId });
    await assertEndedBySession(b1);
    const { event } = await b2.feed.waitForEvent((e) => e.kind.case === "sessionEnded", "a session_ended event", { from });
    if (event.kind.case === "sessionEnded") {
      assert.equal(event.kind.value.sessionId, b1.sessionId);
      assert.equal(event.kind.value.byOperator, true, "by_operator is true when an operator ended it");
    }
    await assertStillLive(b2, b2.feed.received.length, "b's other session");
    await assertStillLive(a1, a1.feed.received.length, "a's sessions");
  });

  it("drops a stream from the registry once its client disconnects", async () => {
    const [user] = (await newUsers(server, 1, "gone")) as [string];
    const s = await open(user, "connect", {}, "closing");
    const me = server.clientsFor(user, "grpc");
    await pollFor(async () => ((await me.connections.listSessions({})).sessions.length === 1 ? true : undefined), "listed", 5_000);
    s.feed.close();
    await pollFor(async () => ((await me.connections.listSessions({})).sessions.length === 0 ? true : undefined), "the closed stream gone", 5_000);
  });

  for (const protocol of MAIN_PROTOCOLS) {
    it(`answers bad input and wrong callers with the right code and ends nothing (${protocol})`, async () => {
      const [user, other] = (await newUsers(server, 2, "bad")) as [string, string];
      const theirs = await open(other, "grpc", { deviceId: "d" }, "victim");
      const plain = server.clientsFor(user, protocol);
      const op = server.clientsFor(uniqueId("op"), protocol, OPERATOR);

      // Operator only: the role is checked before the input.
      await expectCode(plain.connections.listConnections({}), Code.PermissionDenied);
      await expectCode(plain.connections.listConnections({ userId: other }), Code.PermissionDenied);
      await expectCode(plain.connections.listConnections({ pageSize: -1 }), Code.PermissionDenied);

      await expectInvalidArgument(op.connections.listConnections({ pageSize: -1 }), "page_size");
      await expectInvalidArgument(op.connections.listConnections({ pageToken: "not a token!" }), "page_token");
      await expectInvalidArgument(plain.connections.endSession({ sessionId: "" }), "session_id");
      await expectInvalidArgument(op.connections.endSession({ sessionId: "" }), "session_id");

      // Someone else's live session is NOT_FOUND to a user, and stays live and listed.
      const from = theirs.feed.received.length;
      await expectCode(plain.connections.endSession({ sessionId: theirs.sessionId }), Code.NotFound);
      await expectCode(plain.connections.endSession({ sessionId: absentIdLike(theirs.sessionId) }), Code.NotFound);
      await expectCode(op.connections.endSession({ sessionId: absentIdLike(theirs.sessionId) }), Code.NotFound);
      await assertStillLive(theirs, from, "after a refused EndSession");
      assert.ok(!theirs.feed.events.some((e) => e.kind.case === "sessionEnded"), "no session_ended event after a refused EndSession");
      const listed = await server.clientsFor(other, protocol).connections.listSessions({});
      assert.deepEqual(ids(listed.sessions), [theirs.sessionId], "the session is still listed");
      assert.deepEqual(ids((await plain.connections.listSessions({})).sessions), [], "a user with no stream lists none (and never another's)");

      const anonymous = server.clientsWithAuthorization(undefined, protocol);
      await expectCode(anonymous.connections.listSessions({}), Code.Unauthenticated);
      await expectCode(anonymous.connections.endSession({ sessionId: theirs.sessionId }), Code.Unauthenticated);
      await expectCode(anonymous.connections.listConnections({}), Code.Unauthenticated);
      await assertStillLive(theirs, theirs.feed.received.length, "after anonymous calls");
    });
  }

  describe("from an independent @grpc/grpc-js client", () => {
    const services = loadServices<"ConnectionService">(["parley/v1/connection_service.proto"]);
    let client: ServiceClient;
    before(() => {
      client = new services.ConnectionService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    });
    after(() => client?.close());

    async function auth(userId: string, operator = false): Promise<grpc.Metadata> {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${await server.tokenFor(userId, operator ? OPERATOR : {})}`);
      return md;
    }

    it("lists and ends a session, and is refused ListConnections without the operator role", async () => {
      const [user] = (await newUsers(server, 1, "grpcjs")) as [string];
      const s = await open(user, "grpc", { deviceId: "grpcjs-device", clientVersion: "android/9.9" }, "grpc-js");
      const md = await auth(user);
      const { value: listed } = await pollFor(async () => {
        const res = await call(client, "ListSessions", {}, md);
        return res.sessions.length === 1 ? res.sessions[0] : undefined;
      }, "the session listed over grpc-js", 5_000);
      assert.equal(listed.session_id, s.sessionId);
      assert.equal(listed.user_id, user);
      assert.equal(listed.device_id, "grpcjs-device");
      assert.equal(listed.client_version, "android/9.9");
      assert.equal(listed.protocol, "grpc");
      await expectStatus(call(client, "ListConnections", {}, md), grpc.status.PERMISSION_DENIED);
      const opRes = await call(client, "ListConnections", { user_id: user }, await auth(uniqueId("op"), true));
      assert.deepEqual(opRes.connections.map((c: { session_id: string }) => c.session_id), [s.sessionId]);
      await call(client, "EndSession", { session_id: s.sessionId }, md);
      await assertEndedBySession(s);
    });
  });
});

describe("the connection registry across nodes, one of them killed with SIGKILL", function () {
  const TTL_SECONDS = 5;
  let database: FreshDatabase | null = null;
  let prefix = "";
  const nodes: NodeProcess[] = [];
  const sessions: Session[] = [];
  let nodeA: NodeProcess;
  let nodeB: NodeProcess;

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    database = await createTestDatabase();
    prefix = natsPrefix();
    const env = sharedNodeEnv(database!.url, prefix, {
      REGISTRY_NODE_TTL_SECONDS: String(TTL_SECONDS),
      REGISTRY_HEARTBEAT_SECONDS: "1",
    });
    nodeA = await spawnNode(env, "node A");
    nodes.push(nodeA);
    nodeB = await spawnNode(env, "node B");
    nodes.push(nodeB);
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed") return;
    printNodeOutputs(nodes);
  });
  after(async () => {
    for (const s of sessions) s.feed.close();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
  });

  it(`lists every node's streams on any node, ends a session on another node, and drops a SIGKILLed node's streams within REGISTRY_NODE_TTL_SECONDS (${TTL_SECONDS} s)`, async function () {
    this.timeout(60_000);
    const [u, v] = (await newUsers(nodeA, 2, "mn")) as [string, string];
    const open = async (node: NodeProcess, user: string, protocol: Protocol, label: string) => {
      const s = await openSession(node, user, protocol, { deviceId: label }, label);
      sessions.push(s);
      return s;
    };
    const uA = await open(nodeA, u, "grpc", "u@A");
    const uB = await open(nodeB, u, "connect", "u@B");
    const uB2 = await open(nodeB, u, "grpc", "u2@B");
    const vB = await open(nodeB, v, "grpc", "v@B");

    // A stream on B is listed on A within a second of connecting.
    const meOnA = nodeA.clientsFor(u, "grpc");
    const { value: mine, at } = await pollFor(async () => {
      const list = (await meOnA.connections.listSessions({})).sessions;
      return list.length === 3 ? list : undefined;
    }, "u's three streams (on A and B) listed on node A", 5_000);
    const latest = Math.max(uA.liveAt, uB.liveAt, uB2.liveAt);
    assert.ok(at - latest <= LISTED_WITHIN_MS, `listed on A ${at - latest} ms after the last caught_up (at most ${LISTED_WITHIN_MS} ms)`);
    const nodeOf = new Map(mine.map((c) => [c.sessionId, c.nodeId]));
    const idA = nodeOf.get(uA.sessionId)!;
    const idB = nodeOf.get(uB.sessionId)!;
    assert.ok(idA && idB && idA !== idB, `the streams name their own nodes (A=${idA}, B=${idB})`);
    assert.equal(nodeOf.get(uB2.sessionId), idB);

    const op = nodeA.clientsFor(uniqueId("op"), "connect", OPERATOR);
    const { value: counts } = await pollFor(async () => {
      const res = await op.connections.listConnections({});
      return res.connections.length === 4 ? res : undefined;
    }, "all four streams listed for the operator", 5_000);
    const countOf = (res: ListConnectionsResponse, id: string) => res.nodes.find((n) => n.nodeId === id)?.connections;
    assert.equal(countOf(counts, idA), 1n, "node A serves one stream");
    assert.equal(countOf(counts, idB), 3n, "node B serves three");
    assert.deepEqual(new Set(ids((await op.connections.listConnections({ nodeId: idB })).connections)), new Set([uB.sessionId, uB2.sessionId, vB.sessionId]), "node_id filter");

    // Ended through node A, the stream on node B ends; u's others stay.
    const from = uA.feed.received.length;
    await meOnA.connections.endSession({ sessionId: uB.sessionId });
    await assertEndedBySession(uB);
    await uA.feed.waitForEvent((e) => e.kind.case === "sessionEnded" && e.kind.value.sessionId === uB.sessionId, "session_ended on the other node's stream", { from });
    await assertStillLive(uB2, uB2.feed.received.length, "u's other stream on B");

    nodeB.child.kill("SIGKILL");
    const killedAt = Date.now();
    const exit = await nodeB.exited;
    assert.equal(exit.signal, "SIGKILL", `node B was killed (exit ${JSON.stringify(exit)})`);
    const { at: droppedAt } = await pollFor(async () => {
      const res = await op.connections.listConnections({});
      const left = res.connections.filter((c) => c.nodeId === idB);
      return left.length === 0 && countOf(res, idB) === undefined ? res : undefined;
    }, `node B and its streams dropped from the registry`, (TTL_SECONDS + 10) * 1000, 100);
    const took = droppedAt - killedAt;
    assert.ok(took <= TTL_SECONDS * 1000 + 1_500, `node B's streams dropped ${took} ms after the kill (TTL ${TTL_SECONDS} s)`);

    const remaining = await op.connections.listConnections({});
    assert.deepEqual(ids(remaining.connections), [uA.sessionId], "node A's stream stays listed");
    assert.equal(countOf(remaining, idA), 1n);
    assert.deepEqual(ids((await meOnA.connections.listSessions({})).sessions), [uA.sessionId], "ListSessions shows only the live session");
  });
});
