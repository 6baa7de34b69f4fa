/**
 * The SDK session against the real server over Connect: plain send and receive, a lost
 * response that must not store a message twice, resuming the feed from a stored cursor, and
 * resync_required.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { MessageService } from "../../gen/parley/v1/message_service_pb.ts";
import { ModerationAction } from "../../gen/parley/v1/moderation_pb.ts";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MemoryStore } from "../../src/client/storage.ts";
import { SyncState } from "../../src/client/sync-state.ts";
import { eventually } from "../helpers/feed.ts";
import { createDirect, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { sdkClient, type SdkClient } from "./support.ts";

describe("client SDK session (real server, Connect)", function () {
  let server: TestServer;
  const open: SdkClient[] = [];
  const track = (c: SdkClient) => (open.push(c), c);

  before(async () => {
    server = await startTestServer();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });
  after(async () => {
    await server?.stop();
  });

  async function pair() {
    const [a, b] = await newUsers(server, 2, "sdk");
    const conv = await createDirect(server.clientsFor(a!), b!);
    return { a: a!, b: b!, conv };
  }

  it("sends a plain message that the peer's SDK receives, reads back in history, edits and finds by search", async () => {
    const { a, b, conv } = await pair();
    const alice = track(sdkClient(server, a));
    const bob = track(sdkClient(server, b));
    await bob.waitUntil(() => bob.client.live, "bob live");
    await alice.waitUntil(() => alice.client.live, "alice live");

    const pending = await alice.client.send(conv.id, { text: "hello bob" });
    assert.ok(pending.localId, "a local id at once");
    const stored = await pending.message;
    assert.equal(stored.clientMessageId, pending.localId);
    assert.equal(stored.content.case, "text");

    await bob.waitUntil(() => bob.messages(conv.id).length === 1, "bob got the message");
    assert.equal(bob.messages(conv.id)[0]!.text, "hello bob");
    assert.ok(alice.events.some((e) => e.type === "sent" && e.localId === pending.localId), "alice saw a sent event");
    assert.deepEqual(await alice.client.outbox(), [], "the outbox is empty once stored");

    const history = await bob.client.history(conv.id);
    assert.deepEqual(history.map((m) => m.text), ["hello bob"]);

    const edited = await alice.client.edit(conv.id, stored.seq, "hello again bob");
    assert.equal(edited.text, "hello again bob");
    await bob.waitUntil(() => bob.events.some((e) => e.type === "edited" && e.message.text === "hello again bob"), "bob saw the edit");

    await eventually(async () => (await bob.client.search("again")).some((r) => r.message.seq === stored.seq), "the edited message is found by search");
  });

  it("marks a send the server refuses for good as failed and goes on with the next one", async () => {
    const { a, conv } = await pair();
    const alice = track(sdkClient(server, a));
    const bad = await alice.client.send("conv-that-does-not-exist", { text: "lost" });
    const good = await alice.client.send(conv.id, { text: "fine" });
    await assert.rejects(bad.message, (err: Error) => err.name === "SendFailedError");
    assert.equal((await good.message).content.value, "fine");
    const left = await alice.client.outbox();
    assert.equal(left.length, 1, "the failed send stays for the app to show");
    assert.ok(left[0]!.failure, "with its reason");
    await alice.client.discardSend(bad.localId);
    assert.deepEqual(await alice.client.outbox(), []);
  });

  it("does not store a message twice when the response to a stored send was lost", async () => {
    const { a, b, conv } = await pair();
    let dropped = 0;
    // The first SendMessage reaches the server and is stored; its answer is then thrown away.
    const loseFirstResponse: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (req.method.name === MessageService.method.sendMessage.name && dropped === 0) {
        dropped++;
        throw new ConnectError("connection reset after the server answered", Code.Unavailable);
      }
      return res;
    };
    const alice = track(sdkClient(server, a, { interceptors: [loseFirstResponse] }));
    const pending = await alice.client.send(conv.id, { text: "exactly once" });
    const stored = await pending.message;
    assert.equal(dropped, 1, "the first answer was lost");
    const all = await listAllForward(server.clientsFor(b), conv.id);
    assert.deepEqual(all.map((m) => m.content.value), ["exactly once"], "stored once");
    assert.equal(all[0]!.id, stored.id, "the retry returned the original message");
  });

  it("resumes the feed from the stored cursor: nothing lost and nothing twice", async () => {
    const { a, b, conv } = await pair();
    const store = new MemoryStore();
    const first = track(sdkClient(server, b, { store }));
    await first.waitUntil(() => first.client.live, "live");
    for (let i = 1; i <= 5; i++) await sendText(server.clientsFor(a), conv.id, `m${i}`);
    await first.waitUntil(() => first.messages(conv.id).length === 5, "the first five");
    await first.close();

    for (let i = 6; i <= 10; i++) await sendText(server.clientsFor(a), conv.id, `m${i}`);
    const second = track(sdkClient(server, b, { store }));
    await second.waitUntil(() => second.messages(conv.id).length >= 5, "the five sent while away");
    await sendText(server.clientsFor(a), conv.id, "m11");
    await second.waitUntil(() => second.messages(conv.id).length >= 6, "a live one after the replay");

    const got = [...first.messages(conv.id), ...second.messages(conv.id)].map((m) => m.text);
    assert.deepEqual(got, Array.from({ length: 11 }, (_, i) => `m${i + 1}`), "every message once, in order, across the restart");
  });

  it("replays, after a restart, the events of a group it was removed from meanwhile, and goes on", async () => {
    const [a, b, c, d] = (await newUsers(server, 4, "removed")) as [string, string, string, string];
    const group = await createGroup(server.clientsFor(a), [b, c]);
    const direct = await createDirect(server.clientsFor(a), b);
    const store = new MemoryStore();
    const first = track(sdkClient(server, b, { store }));
    await first.waitUntil(() => first.client.live, "live");
    await first.close();

    // While Bob is away: the group grows (an event Bob may replay, of a group he can no
    // longer read once the replay reaches it), then he is removed; then Alice writes to him.
    await server.clientsFor(a).conversations.addMembers({ conversationId: group.id, userIds: [d] });
    await server.clientsFor(a).conversations.removeMember({ conversationId: group.id, userId: b });
    await sendText(server.clientsFor(a), direct.id, "still here?");

    const second = track(sdkClient(server, b, { store }));
    await second.waitUntil(() => second.messages(direct.id).length === 1, "the message sent after the removal");
    assert.equal(second.messages(direct.id)[0]!.text, "still here?");
    assert.ok(!second.events.some((e) => e.type === "event_skipped"), "no event had to be passed over");
  });

  it("reloads on resync_required: hands over what was missed, tells the app, and stores the fresh cursor", async () => {
    const { a, b, conv } = await pair();
    for (let i = 1; i <= 5; i++) await sendText(server.clientsFor(a), conv.id, `m${i}`);
    const store = new MemoryStore();
    const sync = new SyncState(store);
    // As if this device had seen up to seq 2 under a cursor the server cannot replay any more.
    await sync.set(conv.id, 2n);
    await sync.setCursor("p1.0");

    const bob = track(sdkClient(server, b, { store }));
    await bob.waitUntil(() => bob.events.some((e) => e.type === "resync"), "a resync notice");
    await bob.waitUntil(() => bob.client.live, "live again after the resync");
    assert.deepEqual(bob.messages(conv.id).map((m) => m.text), ["m3", "m4", "m5"], "the missed messages, in order");
    const resyncAt = bob.events.findIndex((e) => e.type === "resync");
    assert.ok(bob.events.findIndex((e) => e.type === "message") < resyncAt, "the reload comes before the notice");
    const cursor = await new SyncState(store).cursor();
    assert.notEqual(cursor, "p1.0", "the fresh cursor replaced the stale one");

    await sendText(server.clientsFor(a), conv.id, "m6");
    await bob.waitUntil(() => bob.messages(conv.id).length === 4, "m6 live");
    assert.deepEqual(bob.messages(conv.id).map((m) => m.text), ["m3", "m4", "m5", "m6"], "and nothing twice");
  });

  it("waits out a suspension: tells the app, does not keep knocking, and is live again when it ends", async () => {
    const { a, b, conv } = await pair();
    let subscribes = 0;
    const countSubscribes: Interceptor = (next) => async (req) => {
      if (req.method.name === "Subscribe") subscribes++;
      return next(req);
    };
    const bob = track(sdkClient(server, b, { interceptors: [countSubscribes] }));
    await bob.waitUntil(() => bob.client.live, "live");
    const operator = server.clientsFor(`ops-${a}`, "connect", { roles: ["operator"] });
    const until = new Date(Date.now() + 3_000);
    await operator.admin.restrictUser({ userId: b, action: ModerationAction.SUSPEND, suspendUntil: timestampFromDate(until), reason: "cool down" });

    await bob.waitUntil(() => bob.events.some((e) => e.type === "restricted"), "told of the suspension");
    const told = bob.events.find((e) => e.type === "restricted");
    assert.ok(told?.type === "restricted" && told.restriction.reason === "cool down" && told.restriction.until, "with its reason and end");
    const whileSuspended = subscribes;
    await new Promise((r) => setTimeout(r, Math.max(0, until.getTime() - Date.now() - 500)));
    assert.ok(subscribes - whileSuspended <= 1, `waited for the end instead of retrying (${subscribes - whileSuspended} more Subscribe calls)`);

    await bob.waitUntil(() => bob.client.live, "live again after the suspension", 10_000);
    await sendText(server.clientsFor(a), conv.id, "welcome back");
    await bob.waitUntil(() => bob.messages(conv.id).some((m) => m.text === "welcome back"), "a message after the suspension");
  });

  it("stops resubscribing and tells the app when its session is ended from elsewhere", async () => {
    const [a] = await newUsers(server, 1, "sdk");
    let subscribes = 0;
    const countSubscribes: Interceptor = (next) => async (req) => {
      if (req.method.name === "Subscribe") subscribes++;
      return next(req);
    };
    const alice = sdkClient(server, a!, { interceptors: [countSubscribes] });
    try {
      await alice.waitUntil(() => alice.client.live, "live");
      const elsewhere = server.clientsFor(a!);
      let sessions: string[] = [];
      await eventually(async () => (sessions = (await elsewhere.connections.listSessions({})).sessions.map((s) => s.sessionId)).length === 1, `the SDK's session listed (${sessions.length})`, 2_000);
      await elsewhere.connections.endSession({ sessionId: sessions[0]! });

      await alice.waitUntil(() => alice.events.some((e) => e.type === "session_ended"), "told the session ended");
      const told = alice.events.find((e) => e.type === "session_ended");
      assert.ok(told?.type === "session_ended" && !told.byOperator, "ended by the user, not an operator");
      assert.equal(alice.client.live, false, "the feed is down");
      const after = subscribes;
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal(subscribes, after, "it did not subscribe again");
      assert.deepEqual((await elsewhere.connections.listSessions({})).sessions, [], "and no session is live");
    } finally {
      await alice.close();
    }
  });
});
