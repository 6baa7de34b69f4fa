/**
 * Resume (issue 4, "Resume"): Subscribe(cursor) replays from the database everything after the
 * cursor, sends caught_up, then continues live, with no gap and no duplicate at the switch-over,
 * in per-conversation order.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { describeEvent, describeError, isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertReceivedExactly, DeliveryLedger, failureSummary, sendLoop, storedMessages } from "../helpers/ledger.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";

/** The stored events (non-empty cursor) among the frames before index `end`, as "id kind". */
function storedBefore(feed: Feed, end = feed.received.length, from = 0): string[] {
  const out: string[] = [];
  for (let i = from; i < end; i++) {
    const f = feed.received[i]!.frame;
    if (f.case === "event" && f.value.cursor) out.push(`${f.value.id} ${describeEvent(f.value)}`);
  }
  return out;
}

/**
 * Stored events ("id kind" as storedBefore gives them) grouped by conversation, each group in
 * the order given: the order the feed promises (events of different conversations stand in
 * different log partitions, so their interleaving may differ between live and replay).
 */
function perConversation(events: readonly string[]): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const e of events) {
    const conversation = e.split(" ")[1]!.split(":")[0]!;
    groups.set(conversation, [...(groups.get(conversation) ?? []), e]);
  }
  return new Map([...groups].sort(([a], [b]) => a.localeCompare(b)));
}

function indexOfEvent(feed: Feed, match: (e: Event) => boolean): number {
  return feed.received.findIndex((r) => r.frame.case === "event" && match(r.frame.value));
}

describe("Subscribe with a cursor: replay, then live", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(userId: string, protocol: Protocol, cursor?: string): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { cursor, label: `${userId}/${protocol}${cursor ? "/resumed" : ""}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("replays exactly the stored events after the cursor, in order, then caught_up, then live", async () => {
        const [a, b, c] = await newUsers(server, 3, "replay");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const other = await createDirect(server.clientsFor(c!, protocol), b!);
        const fb = await live(b!, protocol);
        for (let i = 1; i <= 4; i++) await sendText(A, conv.id, `m${i}`);
        await sendText(server.clientsFor(c!, protocol), other.id, "direct");
        await A.conversations.updateConversation({ conversationId: conv.id, name: "renamed" });
        await server.clientsFor(c!, protocol).conversations.markRead({ conversationId: conv.id, seq: 3n });
        await sendText(A, conv.id, "m5");
        await fb.waitForEvent(isMessage(conv.id, 5n), "m5");
        await fb.waitForEvent(
          (e) => e.kind.case === "readPositionMoved" && e.conversationId === conv.id,
          "read_position_moved",
        );
        const stored = fb.events.filter((e) => e.cursor);
        assert.ok(stored.length >= 8, `at least 8 stored events arrived live; got ${fb.summary()}`);

        // Resume after m2: everything after it comes back, once, in order. (Notifications of
        // being added are recorded asynchronously, so they may come anywhere among the messages.)
        const from = stored.find(isMessage(conv.id, 2n));
        assert.ok(from, `m2 arrived as a stored event; got ${fb.summary()}`);
        const fromIndex = indexOfEvent(fb, (e) => e.id === from.id);
        const expected = storedBefore(fb, fb.received.length, fromIndex + 1);
        const resumed = await live(b!, protocol, from.cursor);
        const caughtUpAt = resumed.received.findIndex((r) => r.frame.case === "caughtUp");
        const replayed = storedBefore(resumed, caughtUpAt);
        assert.deepEqual(perConversation(replayed), perConversation(expected), "the replay is exactly the stored events after the cursor, each conversation's in the live order");
        const caughtUp = resumed.received[caughtUpAt]!.frame;
        assert.ok(caughtUp.case === "caughtUp" && caughtUp.value.cursor, "caught_up carries a cursor");

        const m6 = await sendText(A, conv.id, "m6");
        const { index } = await resumed.waitForEvent(isMessage(conv.id, m6.seq), "m6 live after caught_up");
        assert.ok(index > caughtUpAt, "live events come after caught_up");
        assert.deepEqual(
          resumed.events.filter((e) => e.kind.case === "messageCreated" && e.conversationId === conv.id).map((e) => describeEvent(e)),
          [3, 4, 5, 6].map((s) => `${conv.id.slice(-6)}:msg#${s}`),
          "resumed after m2: m3..m6 once each",
        );

        // The caught_up cursor covers the replay: resuming from it gives only what came later.
        const fromCaughtUp = await live(b!, protocol, caughtUp.case === "caughtUp" ? caughtUp.value.cursor : "");
        const later = storedBefore(fromCaughtUp, fromCaughtUp.received.findIndex((r) => r.frame.case === "caughtUp"));
        assert.deepEqual(later.map((s) => s.split(" ")[1]), [`${conv.id.slice(-6)}:msg#6`], "only m6 after the caught_up cursor");
      });

      it("replays a conversation as the live stream delivered it: what came while a member, nothing from before joining or after leaving", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "replay-member");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fd = await live(d!, protocol);
        const start = fd.lastCursor;
        assert.ok(start, `the first frame of a stream started without a cursor carries one; got ${fd.summary()}`);
        const fb = await live(b!, protocol);

        const m1 = await sendText(A, conv.id, "before d");
        await A.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
        const m2 = await sendText(A, conv.id, "with d");
        await A.conversations.removeMember({ conversationId: conv.id, userId: d! });
        const m3 = await sendText(A, conv.id, "after d");
        await fb.waitForEvent(isMessage(conv.id, m3.seq), "m3 on b's stream");
        const fenceConv = await createDirect(A, d!);
        const fence = await sendText(A, fenceConv.id, "fence");
        await fd.waitForEvent(isMessage(fenceConv.id, fence.seq), "the fence message");
        const ofConv = (line: string) => line.includes(` ${conv.id.slice(-6)}:`);
        const liveStored = storedBefore(fd).filter(ofConv);
        assert.ok(fd.events.some(isMessage(conv.id, m2.seq)), `d got the message sent while it was a member; got ${fd.summary()}`);

        // A phone that was offline through all of it reconnects with its first cursor.
        const replay = await live(d!, protocol, start);
        const replayed = storedBefore(replay, replay.received.findIndex((r) => r.frame.case === "caughtUp")).filter(ofConv);
        for (const m of [m1, m3]) {
          assert.ok(!replay.events.some(isMessage(conv.id, m.seq)), `seq ${m.seq} was sent while d was not a member`);
        }
        assert.deepEqual(
          replayed,
          liveStored,
          "the replay of the conversation equals what the live stream delivered: member_added, m2 (sent while d was a member), member_removed",
        );
      });

      it("replays a conversation created while streaming exactly as the live stream delivered it", async () => {
        const [a, b, c] = await newUsers(server, 3, "replay-created");
        const fb = await live(b!, protocol);
        const start = fb.lastCursor;
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        const m1 = await sendText(server.clientsFor(a!, protocol), conv.id, "first");
        await fb.waitForEvent(isMessage(conv.id, m1.seq), "the first message of the new group");
        const ofConv = (line: string) => line.includes(` ${conv.id.slice(-6)}:`);
        const liveStored = storedBefore(fb).filter(ofConv);
        const replay = await live(b!, protocol, start);
        const replayed = storedBefore(replay, replay.received.findIndex((r) => r.frame.case === "caughtUp")).filter(ofConv);
        assert.deepEqual(
          liveStored,
          replayed,
          "the live stream delivers the same stored events of the new conversation as a replay (no event is only in one of them)",
        );
      });
    });
  }

  for (const protocol of MAIN_PROTOCOLS) {
    for (const garbage of ["not a cursor!", "🙂", "%00%ff~"]) {
      it(`rejects the cursor ${JSON.stringify(garbage)} with INVALID_ARGUMENT over ${protocol}`, async () => {
        const [b] = await newUsers(server, 1, "garbage");
        const feed = openFeed(server.clientsFor(b!, protocol), { cursor: garbage, label: `b/garbage/${protocol}` });
        feeds.push(feed);
        const end = await feed.ended("with a garbage cursor");
        assert.equal(end.error?.code, Code.InvalidArgument, `expected INVALID_ARGUMENT; got ${feed.summary()}`);
        assert.equal(feed.received.length, 0, "no frame before the error");
      });
    }
  }

  it("sends heartbeats on an idle stream whose cursor resumes after everything delivered", async () => {
    const [a, b, c] = await newUsers(server, 3, "heartbeat");
    const A = server.clientsFor(a!);
    const conv = await createGroup(A, [b!, c!]);
    const fb = await live(b!, "grpc");
    const m1 = await sendText(A, conv.id, "m1");
    const { index: m1At } = await fb.waitForEvent(isMessage(conv.id, m1.seq), "m1");
    // FEED_HEARTBEAT_SECONDS=1 on this server.
    const { value: hb } = await fb.waitFor(
      (f, i) => (i > m1At && f.case === "heartbeat" ? f.value : undefined),
      "heartbeat after m1 on an idle stream (FEED_HEARTBEAT_SECONDS=1)",
      { timeoutMs: 4_000 },
    );
    assert.ok(hb.cursor, "a heartbeat carries a cursor");
    assert.ok(hb.serverTime && Math.abs(timestampMs(hb.serverTime) - Date.now()) < 5_000, "server_time is about now");
    const m2 = await sendText(A, conv.id, "m2");
    const resumed = await live(b!, "connect", hb.cursor);
    const caughtUpAt = resumed.received.findIndex((r) => r.frame.case === "caughtUp");
    assert.deepEqual(
      storedBefore(resumed, caughtUpAt).map((s) => s.split(" ")[1]),
      [`${conv.id.slice(-6)}:msg#${m2.seq}`],
      "the heartbeat cursor covers m1: only m2 is replayed",
    );
  });

  it("loses and doubles nothing when the subscriber reconnects with its last cursor at random points of a send storm", async function () {
    this.timeout(60_000);
    const [s, p1, p2, p3, p4] = await newUsers(server, 5, "storm");
    const P = (id: string) => server.clientsFor(id, "grpc");
    const g1 = await createGroup(P(p1!), [s!, p2!]);
    const g2 = await createGroup(P(p3!), [s!, p4!]);
    const g3 = await createGroup(P(p1!), [s!, p2!, p3!, p4!]);
    const d = await createDirect(P(p2!), s!);
    const plan: Array<[string, string[]]> = [
      [p1!, [g1.id, g3.id]],
      [p2!, [g1.id, g3.id, d.id]],
      [p3!, [g2.id, g3.id]],
      [p4!, [g2.id, g3.id]],
    ];
    const ledger = new DeliveryLedger("s");
    let feed = openFeed(server.clientsFor(s!, "grpc"), { label: "s#0" });
    await feed.ready();

    let stormDone = false;
    const storm = Promise.all(
      plan.map(([id, convs], i) =>
        sendLoop(() => server.clientsFor(id, i % 2 ? "connect" : "grpc"), id, { conversationIds: convs, count: 60 }),
      ),
    ).finally(() => (stormDone = true));

    let reconnects = 0;
    const streamErrors: string[] = [];
    while (!stormDone) {
      // Read for a random while or a random number of frames, whichever comes first.
      const target = feed.received.length + randomInt(1, 30);
      const until = Date.now() + randomInt(0, 150);
      while (!stormDone && !feed.end && feed.received.length < target && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 5));
      }
      feed.close();
      if (feed.end?.error) streamErrors.push(`${feed.label}: ${describeError(feed.end.error)}`);
      ledger.absorb(feed);
      reconnects++;
      feed = openFeed(server.clientsFor(s!, reconnects % 2 ? "connect" : "grpc"), { cursor: feed.lastCursor, label: `s#${reconnects}` });
    }
    const records = (await storm).flat();
    assert.equal(records.filter((r) => r.error).length, 0, `every send succeeded; failures: ${failureSummary(records)}`);
    const stored = await storedMessages(server.clientsFor(s!), [g1.id, g2.id, g3.id, d.id]);
    assert.equal(stored.size, records.length, "the database has every sent message");

    await feed.waitUntil(() => {
      const got = new Set([...ledger.keys(), ...feed.events.filter((e) => e.kind.case === "messageCreated").map((e) =>
        e.kind.case === "messageCreated" ? `${e.conversationId}#${e.kind.value.message?.seq}` : "")]);
      return got.size >= stored.size;
    }, `all ${stored.size} messages received after the last resume`, 15_000).catch((err: unknown) => {
      ledger.absorb(feed);
      throw err;
    });
    feed.close();
    ledger.absorb(feed);
    assert.deepEqual(streamErrors, [], "no stream failed");
    assert.ok(reconnects >= 5, `the storm saw at least 5 reconnects (got ${reconnects})`);
    assertReceivedExactly(ledger, stored, `${reconnects} reconnects`);
  });
});
