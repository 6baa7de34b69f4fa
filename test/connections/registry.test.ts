/**
 * The connection registry on one node, over gRPC and Connect: a stream is listed within a
 * second with what its client said about itself, leaves the listing when it closes, and can be
 * ended by its user (or an operator), which ends it with END_REASON_SESSION_ENDED and tells the
 * user's other streams. Wrong callers and bad input get the right code and change nothing.
 */
import assert from "node:assert/strict";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import pg from "pg";
import { EndReason, EventService } from "../../gen/parley/v1/event_service_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { encodePageToken } from "../../src/page-token.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { eventually, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { createDirect, sendText } from "../helpers/fixtures.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type Protocol, type RemoteServer, type TestServer } from "../helpers/test-server.ts";

/** A Subscribe stream opened with the registry's headers, as an app would. */
async function deviceFeed(server: RemoteServer, userId: string, protocol: Protocol, headers: Record<string, string>, label: string): Promise<Feed> {
  const token = await server.tokenFor(userId);
  const withHeaders: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
    return next(req);
  };
  const events = createClient(EventService, server.transport(protocol, [withHeaders]));
  return openLiveFeed((cursor, signal) => events.subscribe({ cursor }, { signal, timeoutMs: 0 }), { label });
}

/** The session id a stream was given in its caught_up frame. */
async function sessionOf(feed: Feed): Promise<string> {
  const { value } = await feed.waitFor((f) => (f.case === "caughtUp" ? f.value.sessionId : undefined), "caught_up with a session id");
  assert.ok(value, "caught_up carries a session id");
  return value;
}

function isSessionEnded(sessionId: string, byOperator: boolean): (e: Event) => boolean {
  return (e) => e.kind.case === "sessionEnded" && e.kind.value.sessionId === sessionId && e.kind.value.byOperator === byOperator;
}

describe("connection registry (one node)", function () {
  let server: TestServer;
  const feeds: Feed[] = [];
  const track = (feed: Feed) => (feeds.push(feed), feed);

  before(async function () {
    this.timeout(60_000);
    server = await startTestServer();
  });
  afterEach(() => {
    for (const feed of feeds.splice(0)) feed.close();
  });
  after(async () => {
    await server?.stop();
  });

  async function sessionIds(userId: string): Promise<string[]> {
    return (await server.clientsFor(userId).connections.listSessions({})).sessions.map((s) => s.sessionId);
  }

  for (const protocol of MAIN_PROTOCOLS) {
    it(`lists a ${protocol} stream within a second, with its device, client version, user agent and node, and drops it when it closes`, async () => {
      const [alice] = await newUsers(server, 1, "reg");
      const longAgent = `parley-test/${"x".repeat(300)}`;
      const feed = track(await deviceFeed(server, alice!, protocol, { "x-parley-device-id": "phone-1", "x-parley-client-version": "ios/3.2.1", "user-agent": longAgent }, `alice/${protocol}`));
      const sessionId = await sessionOf(feed);
      const opened = Date.now();
      await eventually(async () => (await sessionIds(alice!)).includes(sessionId), "the stream listed", 1_000);
      const listedAfterMs = Date.now() - opened;

      const [session] = (await server.clientsFor(alice!, protocol).connections.listSessions({})).sessions;
      assert.equal(session?.sessionId, sessionId);
      assert.equal(session.userId, alice);
      assert.equal(session.deviceId, "phone-1");
      assert.equal(session.clientVersion, "ios/3.2.1");
      assert.equal(session.protocol, protocol);
      assert.equal([...session.userAgent].length, 200, "the user agent is cut to 200 characters");
      assert.ok(longAgent.startsWith(session.userAgent));
      assert.ok(session.nodeId, "names its node");
      assert.ok(session.connectedAt && session.lastHeartbeatAt, "with when it connected and its node's last heartbeat");
      assert.ok(listedAfterMs < 1_000, `listed ${listedAfterMs} ms after caught_up`);

      const operator = server.clientsFor(`ops-${alice}`, protocol, { roles: ["operator"] });
      const byUser = await operator.connections.listConnections({ userId: alice! });
      assert.deepEqual(byUser.connections.map((c) => c.sessionId), [sessionId], "an operator finds it by user");
      assert.deepEqual(byUser.nodes.map((n) => [n.nodeId, n.connections]), [[session.nodeId, 1n]], "with the per-node count of that user's streams");
      const byNode = await operator.connections.listConnections({ nodeId: session.nodeId, pageSize: 1000 });
      assert.ok(byNode.connections.some((c) => c.sessionId === sessionId), "and by node");

      feed.close();
      await eventually(async () => !(await sessionIds(alice!)).includes(sessionId), "the closed stream gone", 1_000);
    });

    it(`ends a session over ${protocol}: it delivers what came before, then ends with SESSION_ENDED; the user's other streams get session_ended`, async () => {
      const [alice, bob] = await newUsers(server, 2, "reg");
      const conv = await createDirect(server.clientsFor(alice!), bob!);
      const phone = track(await deviceFeed(server, alice!, protocol, { "x-parley-device-id": "phone" }, "alice/phone"));
      const laptop = track(await deviceFeed(server, alice!, protocol, { "x-parley-device-id": "laptop" }, "alice/laptop"));
      const phoneSession = await sessionOf(phone);
      const laptopSession = await sessionOf(laptop);
      await eventually(async () => (await sessionIds(alice!)).length === 2, "both sessions listed", 1_000);
      const listed = (await server.clientsFor(alice!, protocol).connections.listSessions({})).sessions;
      assert.deepEqual(listed.map((s) => s.deviceId), ["laptop", "phone"], "newest first");

      const before = await sendText(server.clientsFor(bob!), conv.id, "just before");
      await server.clientsFor(alice!, protocol).connections.endSession({ sessionId: phoneSession });

      const { index: ending } = await phone.waitFor((f) => (f.case === "ending" ? f.value.reason : undefined), "ending frame");
      assert.equal(phone.received[ending]!.frame.case === "ending" && phone.received[ending]!.frame.value.reason, EndReason.SESSION_ENDED);
      assert.ok(phone.events.some((e) => e.kind.case === "messageCreated" && e.kind.value.message?.seq === before.seq), "the message before was delivered first");
      assert.equal((await phone.ended("after the ending frame")).error, null, "then the stream ends");

      await laptop.waitForEvent(isSessionEnded(phoneSession, false), "session_ended of the phone on the laptop");
      assert.equal(laptop.end, undefined, "the laptop stream stays open");
      assert.deepEqual(await sessionIds(alice!), [laptopSession], "the ended session is no longer listed");
      await expectCode(server.clientsFor(alice!, protocol).connections.endSession({ sessionId: phoneSession }), Code.NotFound);
    });
  }

  it("lets an operator end anyone's session (by_operator set); a user cannot end another user's", async () => {
    const [alice, mallory] = await newUsers(server, 2, "reg");
    const feed = track(await deviceFeed(server, alice!, "connect", {}, "alice"));
    const other = track(await deviceFeed(server, alice!, "grpc", {}, "alice/other"));
    const sessionId = await sessionOf(feed);
    await eventually(async () => (await sessionIds(alice!)).includes(sessionId), "listed", 1_000);

    await expectCode(server.clientsFor(mallory!).connections.endSession({ sessionId }), Code.NotFound);
    assert.ok((await sessionIds(alice!)).includes(sessionId), "still listed after another user's attempt");

    await server.clientsFor(`ops-${alice}`, "connect", { roles: ["operator"] }).connections.endSession({ sessionId });
    await feed.waitFor((f) => (f.case === "ending" && f.value.reason === EndReason.SESSION_ENDED ? true : undefined), "SESSION_ENDED");
    await other.waitForEvent(isSessionEnded(sessionId, true), "session_ended by an operator on the other stream");
    const told = other.events.find(isSessionEnded(sessionId, true));
    assert.equal(told?.actorId, "", "the user is not told which operator");
    assert.ok(!other.events.some((e) => e.kind.case === "sessionEnded" && e.kind.value.sessionId !== sessionId), "nothing from mallory's attempt");
  });

  it("pages an operator's listing newest first without repeats, with per-node counts on the first page only", async () => {
    const [carol] = await newUsers(server, 1, "reg");
    const opened: string[] = [];
    for (let i = 0; i < 5; i++) opened.push(await sessionOf(track(await deviceFeed(server, carol!, "connect", { "x-parley-device-id": `d${i}` }, `carol/${i}`))));
    await eventually(async () => (await sessionIds(carol!)).length === 5, "all five listed", 1_000);
    const operator = server.clientsFor(`ops-${carol}`, "grpc", { roles: ["operator"] });
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await operator.connections.listConnections({ userId: carol!, pageSize: 2, pageToken });
      assert.equal(page.nodes.length > 0, pages === 0, "node counts on the first page only");
      if (pages === 0) assert.equal(page.nodes[0]!.connections, 5n);
      seen.push(...page.connections.map((c) => c.sessionId));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    assert.deepEqual(seen, [...opened].reverse(), "every stream once, newest first");
    assert.equal(pages, 3);
  });

  it("refuses ListConnections to non-operators before reading the request, and bad input with INVALID_ARGUMENT", async () => {
    const [dave] = await newUsers(server, 1, "reg");
    const user = server.clientsFor(dave!, "grpc");
    await expectCode(user.connections.listConnections({}), Code.PermissionDenied);
    await expectCode(user.connections.listConnections({ pageSize: -5, pageToken: "garbage" }), Code.PermissionDenied);
    const operator = server.clientsFor(`ops-${dave}`, "connect", { roles: ["operator"] }).connections;
    await expectInvalidArgument(operator.listConnections({ pageSize: -1 }), "page_size");
    await expectInvalidArgument(operator.listConnections({ pageSize: 1001 }), "page_size");
    await expectInvalidArgument(operator.listConnections({ pageToken: "garbage" }), "page_token");
    await expectInvalidArgument(operator.listConnections({ pageToken: encodePageToken("connections", { t: "soon", id: "x" }) }), "page_token");
    await expectInvalidArgument(operator.listConnections({ pageToken: encodePageToken("reports", { id: "x" }) }), "page_token");
    await expectInvalidArgument(operator.listConnections({ userId: "u".repeat(1000) }), "user_id");
    await expectInvalidArgument(operator.listConnections({ nodeId: "n".repeat(201) }), "node_id");
  });

  it("answers EndSession with INVALID_ARGUMENT for a bad id and NOT_FOUND for one that is not live, writing nothing", async () => {
    const [erin] = await newUsers(server, 1, "reg");
    const feed = track(await deviceFeed(server, erin!, "connect", {}, "erin"));
    const sessionId = await sessionOf(feed);
    await eventually(async () => (await sessionIds(erin!)).includes(sessionId), "listed", 1_000);
    for (const protocol of MAIN_PROTOCOLS) {
      const connections = server.clientsFor(erin!, protocol).connections;
      await expectInvalidArgument(connections.endSession({ sessionId: "" }), "session_id");
      await expectInvalidArgument(connections.endSession({ sessionId: "not-a-session" }), "session_id");
      await expectCode(connections.endSession({ sessionId: "01a25153-0000-7000-8000-000000000000" }), Code.NotFound);
    }
    await expectCode(server.clientsWithAuthorization(undefined).connections.listSessions({}), Code.Unauthenticated);
    await expectCode(server.clientsWithAuthorization(undefined).connections.endSession({ sessionId }), Code.Unauthenticated);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!feed.events.some((e) => e.kind.case === "sessionEnded"), "no session_ended event was written");
    assert.deepEqual(await sessionIds(erin!), [sessionId], "the session is still live");
    assert.equal(feed.end, undefined);
  });

  it("keeps a batch the database refused and writes it once the database takes writes again", async function () {
    // Needs the server's database from outside: PostgreSQL mode only (PGlite lives in the server).
    if (!server.env.DATABASE_URL) this.skip();
    const db = new pg.Client({ connectionString: server.env.DATABASE_URL });
    await db.connect();
    try {
      const [frank] = await newUsers(server, 1, "reg");
      // Every new row is refused from now on, as during an outage, while reads go on working.
      await db.query("ALTER TABLE connections ADD CONSTRAINT registry_hiccup CHECK (false) NOT VALID");
      const feed = track(await deviceFeed(server, frank!, "grpc", {}, "frank"));
      const sessionId = await sessionOf(feed);
      await new Promise((r) => setTimeout(r, 1_200));
      assert.deepEqual(await sessionIds(frank!), [], "not listed while the database refuses the insert");
      await db.query("ALTER TABLE connections DROP CONSTRAINT registry_hiccup");
      await eventually(async () => (await sessionIds(frank!)).includes(sessionId), "listed after the database recovered", 3_000);
      assert.equal(feed.end, undefined, "the stream itself never noticed");
    } finally {
      await db.query("ALTER TABLE connections DROP CONSTRAINT IF EXISTS registry_hiccup");
      await db.end();
    }
  });
});

describe("connection registry switched off (CONNECTION_REGISTRY=off)", function () {
  let server: TestServer;

  before(async function () {
    this.timeout(60_000);
    server = await startTestServer({ CONNECTION_REGISTRY: "off" });
  });
  after(async () => {
    await server?.stop();
  });

  it("still serves streams (with a session id) but answers ConnectionService with FAILED_PRECONDITION", async () => {
    const [gina] = await newUsers(server, 1, "reg");
    const feed = await deviceFeed(server, gina!, "connect", {}, "gina");
    try {
      assert.ok(await sessionOf(feed));
      const own = server.clientsFor(gina!).connections;
      await expectCode(own.listSessions({}), Code.FailedPrecondition);
      await expectCode(own.endSession({ sessionId: "01a25153-0000-7000-8000-000000000000" }), Code.FailedPrecondition);
      await expectCode(own.listConnections({}), Code.PermissionDenied);
      await expectCode(server.clientsFor(`ops-${gina}`, "grpc", { roles: ["operator"] }).connections.listConnections({}), Code.FailedPrecondition);
    } finally {
      feed.close();
    }
  });
});
