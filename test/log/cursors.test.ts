/**
 * Subscribe cursors on the partitioned log, black-box from the contract's byte format
 * (test/helpers/log-cursor.ts): what every frame's cursor holds, and the documented answer to
 * every kind of cursor a client may present — malformed (INVALID_ARGUMENT on `cursor`), of the
 * previous release, of another deployment, of another partition count, ahead of a head, older
 * than the replay window in one partition (resync_required, whose cursor works), and forged but
 * well-formed (replays only what the caller may see). Runs in both modes (embedded and PostgreSQL).
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { ResyncRequired } from "../../gen/parley/v1/event_service_pb.ts";
import { partitionOf } from "../../src/log/partitions.ts";
import { violatedFields, namesField } from "../helpers/expect.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { describeError, frameCursor, isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { readEventLog, readPartitionHeads } from "../helpers/event-log-db.ts";
import {
  cursorBytes,
  forgeCursor,
  otherLogId,
  readCursor,
  toBase64url,
  varint,
  type LogCursor,
} from "../helpers/log-cursor.ts";
import { sharedRealtimeServer, startRealtimeServer } from "../helpers/realtime.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";

/** Not the default, so the tests see the setting honoured. */
const PARTITIONS = 4;

describe("Subscribe cursors on the partitioned log", function () {
  this.timeout(30_000);
  let server: TestServer;
  /** This deployment's log id and the cursor of "now" when the file started. */
  let deployment: LogCursor;
  const feeds: Feed[] = [];
  const track = (f: Feed) => (feeds.push(f), f);

  before(async function () {
    this.timeout(30_000);
    server = await startRealtimeServer({ EVENT_PARTITIONS: String(PARTITIONS) });
    const [u] = await newUsers(server, 1, "probe");
    const probe = await openLiveFeed(server.clientsFor(u!, "grpc"), { label: "probe" });
    probe.close();
    assert.ok(probe.lastCursor, `the first frame of a stream carries a cursor; got ${probe.summary()}`);
    deployment = readCursor(probe.lastCursor);
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });
  after(async () => {
    await server?.stop();
  });

  /** A group of a, b and c with a few messages; b is the subscriber. */
  async function setup(protocol: Protocol, prefix: string) {
    const [a, b, c] = await newUsers(server, 3, prefix);
    const A = server.clientsFor(a!, protocol);
    const conv = await createGroup(A, [b!, c!]);
    const m1 = await sendText(A, conv.id, "m1");
    return { a: a!, b: b!, c: c!, A, conv, m1 };
  }

  /** The cursor of "now" for the user: the first frame of a stream opened without one. */
  async function nowCursor(userId: string, protocol: Protocol): Promise<string> {
    const f = track(await openLiveFeed(server.clientsFor(userId, protocol), { label: `${userId}/now` }));
    f.close();
    return f.lastCursor;
  }

  /**
   * Subscribes with the cursor and asserts the documented resync answer: one resync_required
   * frame with a reason and a cursor of this deployment, then the stream ends without error.
   */
  async function expectResync(userId: string, protocol: Protocol, cursor: string, what: string): Promise<ResyncRequired> {
    const feed = track(openFeed(server.clientsFor(userId, protocol), { cursor, label: `${userId}/${what}/${protocol}` }));
    const end = await feed.ended(`after resync_required for ${what}`);
    assert.equal(end.error, null, `${what}: the stream ends normally after resync_required, not with ${end.error && describeError(end.error)}`);
    assert.deepEqual(
      feed.received.map((r) => r.frame.case),
      ["resyncRequired"],
      `${what}: exactly one resync_required frame and nothing else; got ${feed.summary()}`,
    );
    const frame = feed.received[0]!.frame;
    assert.ok(frame.case === "resyncRequired");
    assert.ok(frame.value.reason, `${what}: the resync_required frame says why`);
    const fresh = readCursor(frame.value.cursor);
    assert.equal(fresh.logId, deployment.logId, `${what}: the fresh cursor is of this deployment's log`);
    assert.equal(fresh.positions.length, PARTITIONS, `${what}: the fresh cursor has one position per partition`);
    return frame.value;
  }

  /**
   * Subscribes with a cursor the server gave after resync_required: it is accepted (caught_up
   * without replaying any message from before it), and live messages arrive once each.
   */
  async function expectFreshCursorWorks(s: Awaited<ReturnType<typeof setup>>, protocol: Protocol, cursor: string, what: string): Promise<void> {
    const feed = track(await openLiveFeed(server.clientsFor(s.b, protocol), { cursor, label: `${s.b}/after-${what}/${protocol}` }));
    const replayed = feed.events.filter((e) => e.kind.case === "messageCreated");
    assert.equal(replayed.length, 0, `${what}: the fresh cursor is "now": no message is replayed; got ${feed.summary()}`);
    const m = await sendText(s.A, s.conv.id, `after ${what}`);
    await feed.waitForEvent(isMessage(s.conv.id, m.seq), `a live message after subscribing with the cursor resync_required gave (${what})`);
    const again = await sendText(s.A, s.conv.id, `fence after ${what}`);
    await feed.waitForEvent(isMessage(s.conv.id, again.seq), "the fence message");
    assert.equal(feed.events.filter(isMessage(s.conv.id, m.seq)).length, 1, `${what}: the live message arrived once`);
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("gives every frame a full cursor: this deployment's log id, one position per partition, never going back", async () => {
        const [a, b, c] = await newUsers(server, 3, "frames");
        const A = server.clientsFor(a!, protocol);
        // Conversations until two partitions are covered (bounded: 40 tries).
        const convs: { id: string; partition: number }[] = [];
        for (let i = 0; i < 40 && new Set(convs.map((x) => x.partition)).size < 2; i++) {
          const g = await createGroup(A, [b!, c!], `g${i}`);
          convs.push({ id: g.id, partition: partitionOf(g.id, PARTITIONS) });
        }
        assert.ok(new Set(convs.map((x) => x.partition)).size >= 2, "precondition: conversations in two partitions");
        const fb = track(await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/frames/${protocol}` }));
        const last = convs.at(-1)!;
        for (const g of [convs[0]!, last, convs[0]!, last]) await sendText(A, g.id, "m");
        const fenceSeq = (await sendText(A, last.id, "fence")).seq;
        await fb.waitForEvent(isMessage(last.id, fenceSeq), "the fence message");
        // An idle second (FEED_HEARTBEAT_SECONDS=1) gives a heartbeat after the events.
        const eventsSoFar = fb.received.length;
        await fb.waitFor((f, i) => (i >= eventsSoFar && f.case === "heartbeat" ? true : undefined), "a heartbeat after the messages", { timeoutMs: 4_000 });

        let previous: LogCursor | null = null;
        let checked = 0;
        for (const [i, r] of fb.received.entries()) {
          const text = frameCursor(r.frame);
          if (r.frame.case === "event" && !text) continue; // ephemeral (presence, typing): no cursor
          assert.ok(text, `frame ${i} (${r.frame.case}) carries a cursor`);
          const cur = readCursor(text);
          assert.equal(cur.logId, deployment.logId, `frame ${i}: the log id`);
          assert.equal(cur.positions.length, PARTITIONS, `frame ${i}: one position per partition (EVENT_PARTITIONS=${PARTITIONS})`);
          if (previous) {
            for (let p = 0; p < PARTITIONS; p++) {
              assert.ok(cur.positions[p]! >= previous.positions[p]!, `frame ${i}: partition ${p} never goes back (${previous.positions[p]} → ${cur.positions[p]})`);
            }
            if (r.frame.case === "event" && r.frame.value.conversationId) {
              const p = partitionOf(r.frame.value.conversationId, PARTITIONS);
              assert.ok(cur.positions[p]! > previous.positions[p]!, `frame ${i}: an event advances its own partition ${p}`);
            }
          }
          previous = cur;
          checked++;
        }
        assert.ok(checked >= 7, `checked the cursors of the first frame, 5 messages and a heartbeat; got ${fb.summary()}`);
        if (server.env.DATABASE_URL) {
          const [log, ...more] = await readEventLog(server.env.DATABASE_URL);
          assert.equal(more.length, 0, "event_log has one row");
          assert.equal(log!.logId, deployment.logId, "the cursor's log id is event_log.log_id");
          assert.equal(log!.partitions, PARTITIONS, "event_log.partitions is EVENT_PARTITIONS");
        }
      });

      it("resumes from an event's cursor with exactly the later events of every partition", async () => {
        const [a, b, c] = await newUsers(server, 3, "resume");
        const A = server.clientsFor(a!, protocol);
        const groups: { id: string; partition: number }[] = [];
        for (let i = 0; i < 40 && new Set(groups.map((g) => g.partition)).size < 3; i++) {
          const g = await createGroup(A, [b!, c!], `r${i}`);
          if (!groups.some((x) => x.partition === partitionOf(g.id, PARTITIONS))) groups.push({ id: g.id, partition: partitionOf(g.id, PARTITIONS) });
        }
        assert.equal(groups.length, 3, "precondition: conversations in three partitions");
        const fb = track(await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/resume/${protocol}` }));
        const sent: { conv: string; seq: bigint }[] = [];
        for (let round = 0; round < 3; round++) {
          for (const g of groups) sent.push({ conv: g.id, seq: (await sendText(A, g.id, `r${round}`)).seq });
        }
        for (const m of sent) await fb.waitForEvent(isMessage(m.conv, m.seq), `message ${m.conv.slice(-6)}#${m.seq}`);
        // Resume from the cursor of the 4th message: the other 5 come back, once each, in order per conversation.
        const cut = fb.events.find(isMessage(sent[3]!.conv, sent[3]!.seq))!;
        const resumed = track(await openLiveFeed(server.clientsFor(b!, protocol), { cursor: cut.cursor, label: `b/resumed/${protocol}` }));
        const got = resumed.events.filter((e) => e.kind.case === "messageCreated").map((e) => `${e.conversationId}#${e.kind.case === "messageCreated" ? e.kind.value.message?.seq : ""}`);
        const want = sent.slice(4).map((m) => `${m.conv}#${m.seq}`);
        assert.deepEqual([...got].sort(), [...want].sort(), "exactly the messages after the cursor's event, each once");
        for (const g of groups) {
          const order = got.filter((k) => k.startsWith(g.id));
          assert.deepEqual(order, want.filter((k) => k.startsWith(g.id)), `per-conversation order in ${g.id.slice(-6)}`);
        }
      });

      it("answers a cursor of the previous release (p1.<base36>) with resync_required whose cursor works", async () => {
        const s = await setup(protocol, "old");
        for (const old of ["p1.0", "p1.1", "p1.zz", "p1.3w5e11264sgsf"]) {
          const r = await expectResync(s.b, protocol, old, `old cursor ${old}`);
          assert.match(r.reason, /partition|predates/i, `the reason says the cursor predates the partitioned log; got ${JSON.stringify(r.reason)}`);
        }
        const r = await expectResync(s.b, protocol, "p1.2s", "old cursor p1.2s");
        await expectFreshCursorWorks(s, protocol, r.cursor, "an old cursor");
      });

      it("answers a cursor of another deployment (another log id) with resync_required whose cursor works", async () => {
        const s = await setup(protocol, "foreign");
        const now = readCursor(await nowCursor(s.b, protocol));
        const foreign = forgeCursor({ logId: otherLogId(deployment.logId), positions: now.positions });
        const r = await expectResync(s.b, protocol, foreign, "a foreign log id");
        // All-zero positions of another deployment: still foreign, never "replay everything".
        await expectResync(s.b, protocol, forgeCursor({ logId: otherLogId(deployment.logId), positions: now.positions.map(() => 0n) }), "a foreign zero cursor");
        await expectFreshCursorWorks(s, protocol, r.cursor, "a foreign cursor");
      });

      it("answers a cursor made under another partition count with resync_required whose cursor works", async () => {
        const s = await setup(protocol, "count");
        const now = readCursor(await nowCursor(s.b, protocol));
        let last: ResyncRequired | undefined;
        for (const n of [1, PARTITIONS - 1, PARTITIONS + 1, 16, 1024]) {
          const positions = Array.from({ length: n }, (_, i) => now.positions[i] ?? 0n);
          last = await expectResync(s.b, protocol, forgeCursor({ logId: deployment.logId, positions }), `a cursor with N=${n}`);
        }
        await expectFreshCursorWorks(s, protocol, last!.cursor, "a wrong-count cursor");
      });

      it("answers a cursor ahead of a partition's head with resync_required whose cursor works", async () => {
        const s = await setup(protocol, "ahead");
        const now = readCursor(await nowCursor(s.b, protocol));
        let last: ResyncRequired | undefined;
        for (const p of [0, PARTITIONS - 1]) {
          const positions = now.positions.map((x, i) => (i === p ? x + 1_000_000n : x));
          last = await expectResync(s.b, protocol, forgeCursor({ logId: deployment.logId, positions }), `partition ${p} a million ahead`);
        }
        if (server.env.DATABASE_URL) {
          // Exactly one past a head (read from event_log_partitions): the smallest lie.
          const heads = await readPartitionHeads(server.env.DATABASE_URL);
          const conv = partitionOf(s.conv.id, PARTITIONS);
          const justAhead = heads.map((h) => (h.partition === conv ? h.position + 1n : h.position));
          assert.equal(justAhead.length, PARTITIONS, "event_log_partitions has one row per partition");
          last = await expectResync(s.b, protocol, forgeCursor({ logId: deployment.logId, positions: justAhead }), `one past the head of partition ${conv}`);
        }
        await expectFreshCursorWorks(s, protocol, last!.cursor, "a cursor ahead of the head");
      });

      it("replays only what the caller may see for a forged cursor of position 0 everywhere", async () => {
        const [a, b, c, x, y, z] = await newUsers(server, 6, "forged");
        const mine = await createGroup(server.clientsFor(a!, protocol), [b!, c!], "mine");
        const theirs = await createGroup(server.clientsFor(x!, protocol), [y!, z!], "not b's");
        const m1 = await sendText(server.clientsFor(a!, protocol), mine.id, "for b");
        const secret = await sendText(server.clientsFor(x!, protocol), theirs.id, "not for b");
        const zero = forgeCursor({ logId: deployment.logId, positions: Array.from({ length: PARTITIONS }, () => 0n) });
        const fb = track(await openLiveFeed(server.clientsFor(b!, protocol), { cursor: zero, label: `b/zero/${protocol}` }));
        assert.equal(fb.events.filter(isMessage(mine.id, m1.seq)).length, 1, `b's own conversation is replayed once; got ${fb.summary()}`);
        assert.equal(fb.events.filter(isMessage(theirs.id, secret.seq)).length, 0, "nothing of a conversation b is not in");
        assert.deepEqual(
          fb.events.filter((e) => e.conversationId && e.conversationId !== mine.id).map((e) => e.conversationId),
          [],
          "no event of any other conversation",
        );
      });

      describe("malformed cursors get INVALID_ARGUMENT on `cursor`", () => {
        const cases: Array<[string, () => string]> = [
          ["not base64url", () => "not a cursor!"],
          ["an emoji", () => "🙂"],
          ["a valid cursor with a space inside", () => insertAt(forgeCursor(deployment), 6, " ")],
          ["a valid cursor with a '.' inside", () => insertAt(forgeCursor(deployment), 6, ".")],
          ["a valid cursor with a '*' at the end", () => forgeCursor(deployment) + "*"],
          ["version byte 0x01", () => toBase64url(withByte(cursorBytes(deployment), 0, 0x01))],
          ["version byte 0x03", () => toBase64url(withByte(cursorBytes(deployment), 0, 0x03))],
          ["version byte 0x00", () => toBase64url(withByte(cursorBytes(deployment), 0, 0x00))],
          ["only the version byte", () => toBase64url([0x02])],
          ["truncated inside the log id", () => toBase64url(cursorBytes(deployment).slice(0, 5))],
          ["truncated before N", () => toBase64url(cursorBytes(deployment).slice(0, 9))],
          ["fewer positions than N", () => toBase64url(cursorBytes({ ...deployment, positions: deployment.positions.slice(0, -1), count: PARTITIONS }))],
          ["truncated inside a varint", () => toBase64url([...cursorBytes(deployment), 0x80])],
          ["trailing byte 0x00", () => toBase64url([...cursorBytes(deployment), 0x00])],
          ["trailing bytes 0x01 0x02", () => toBase64url([...cursorBytes(deployment), 0x01, 0x02])],
          ["a position varint of 11 bytes", () => toBase64url([...cursorBytes({ ...deployment, positions: deployment.positions.slice(0, -1), count: PARTITIONS }), ...Array(10).fill(0xff), 0x01])],
          ["a position varint of 12 bytes that encodes 0 (longer than any 64-bit varint)", () => toBase64url([...cursorBytes({ ...deployment, positions: deployment.positions.slice(0, -1), count: PARTITIONS }), ...Array(11).fill(0x80), 0x00])],
          ["a position of 2^64 (does not fit 64 bits)", () => toBase64url([...cursorBytes({ ...deployment, positions: deployment.positions.slice(0, -1), count: PARTITIONS }), ...varint(2n ** 64n)])],
          ["an N varint that overflows", () => toBase64url([0x02, ...Buffer.from(deployment.logId, "hex"), ...Array(10).fill(0xff), 0x01])],
          ["N = 0", () => toBase64url([0x02, ...Buffer.from(deployment.logId, "hex"), 0x00])],
          ["N = 1025", () => forgeCursor({ logId: deployment.logId, positions: Array.from({ length: 1025 }, () => 0n) })],
          ["N = 1025 without the positions", () => toBase64url([0x02, ...Buffer.from(deployment.logId, "hex"), ...varint(1025)])],
        ];
        for (const [what, make] of cases) {
          it(`rejects ${what}`, async () => {
            const [b] = await newUsers(server, 1, "malformed");
            const cursor = make();
            const feed = track(openFeed(server.clientsFor(b!, protocol), { cursor, label: `b/${what}/${protocol}` }));
            const end = await feed.ended(`with a malformed cursor (${what}): ${cursor.slice(0, 60)}`, 3_000);
            assert.equal(end.error?.code, Code.InvalidArgument, `${what}: expected INVALID_ARGUMENT; got ${feed.summary()}`);
            assert.equal(feed.received.length, 0, `${what}: no frame before the error`);
            const fields = violatedFields(end.error!);
            assert.ok(fields.some((f) => namesField(f, "cursor")), `${what}: a BadRequest field violation names cursor; got ${JSON.stringify(fields)} (${end.error!.rawMessage})`);
          });
        }
      });
    });
  }

  it("a cursor with N = 1024 (the most allowed) under another count is a resync, not malformed", async () => {
    const s = await setup("grpc", "n1024");
    await expectResync(s.b, "grpc", forgeCursor({ logId: deployment.logId, positions: Array.from({ length: 1024 }, () => 0n) }), "N=1024");
  });

  it("uses 16 partitions by default", async () => {
    const shared = await sharedRealtimeServer();
    const [u] = await newUsers(shared, 1, "default");
    const f = track(await openLiveFeed(shared.clientsFor(u!, "connect"), { label: "default" }));
    assert.equal(readCursor(f.lastCursor).positions.length, 16, "a cursor of a deployment without EVENT_PARTITIONS has 16 positions");
  });
});

describe("a cursor older than the replay window in one partition", function () {
  this.timeout(30_000);
  const WINDOW_SECONDS = 1;
  let server: TestServer;
  const feeds: Feed[] = [];
  const track = (f: Feed) => (feeds.push(f), f);
  before(async function () {
    this.timeout(30_000);
    server = await startRealtimeServer({ EVENT_PARTITIONS: String(PARTITIONS), EVENT_REPLAY_WINDOW_SECONDS: String(WINDOW_SECONDS) });
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    it(`gets resync_required, while the same cursor with only fresh partitions behind replays them, over ${protocol}`, async () => {
      const [a, b, c] = await newUsers(server, 3, "window");
      const A = server.clientsFor(a!, protocol);
      // Two conversations in different partitions (bounded: 40 tries).
      const first = await createGroup(A, [b!, c!], "old");
      let second = first;
      for (let i = 0; i < 40 && partitionOf(second.id, PARTITIONS) === partitionOf(first.id, PARTITIONS); i++) {
        second = await createGroup(A, [b!, c!], `fresh${i}`);
      }
      const pOld = partitionOf(first.id, PARTITIONS);
      const pFresh = partitionOf(second.id, PARTITIONS);
      assert.notEqual(pOld, pFresh, "precondition: two partitions");

      const fb = track(await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/window/${protocol}` }));
      // Cursors taken from delivered events, so each covers everything before it in its partition.
      const warmUp = await sendText(A, first.id, "warm-up");
      const beforeStale = readCursor((await fb.waitForEvent(isMessage(first.id, warmUp.seq), "the warm-up message")).event.cursor);
      const stale = await sendText(A, first.id, "will be older than the window");
      await fb.waitForEvent(isMessage(first.id, stale.seq), "the message that will be too old");
      const fence = await sendText(A, second.id, "fence");
      const beforeFresh = readCursor((await fb.waitForEvent(isMessage(second.id, fence.seq), "the fence message")).event.cursor);
      await new Promise((r) => setTimeout(r, WINDOW_SECONDS * 1000 + 600)); // precondition: outlive the window
      const fresh = await sendText(A, second.id, "fresh");
      const { event } = await fb.waitForEvent(isMessage(second.id, fresh.seq), "the fresh message");
      const now = readCursor(event.cursor);

      // Only the stale partition behind: the next event there is older than the window.
      const staleBehind = forgeCursor({ logId: now.logId, positions: now.positions.map((x, i) => (i === pOld ? beforeStale.positions[i]! : x)) });
      const r = await expectResyncOn(server, track, b!, protocol, staleBehind);
      assert.match(r.reason, /window|old/i, `the reason names the replay window; got ${JSON.stringify(r.reason)}`);

      // Only the fresh partition behind: replayed, exactly the fresh message, nothing of the stale one.
      const freshBehind = forgeCursor({ logId: now.logId, positions: now.positions.map((x, i) => (i === pFresh ? beforeFresh.positions[i]! : x)) });
      const replay = track(await openLiveFeed(server.clientsFor(b!, protocol), { cursor: freshBehind, label: `b/fresh-behind/${protocol}` }));
      const msgs = replay.events.filter((e) => e.kind.case === "messageCreated");
      assert.deepEqual(msgs.map((e) => e.conversationId), [second.id], `only the fresh message is replayed; got ${replay.summary()}`);
    });
  }
});

async function expectResyncOn(server: TestServer, track: (f: Feed) => Feed, userId: string, protocol: Protocol, cursor: string): Promise<ResyncRequired> {
  const feed = track(openFeed(server.clientsFor(userId, protocol), { cursor, label: `${userId}/stale/${protocol}` }));
  const end = await feed.ended("after resync_required");
  assert.equal(end.error, null, `the stream ends normally; got ${feed.summary()}`);
  assert.deepEqual(feed.received.map((r) => r.frame.case), ["resyncRequired"], `one resync_required frame; got ${feed.summary()}`);
  const frame = feed.received[0]!.frame;
  assert.ok(frame.case === "resyncRequired");
  return frame.value;
}

function insertAt(text: string, at: number, what: string): string {
  return text.slice(0, at) + what + text.slice(at);
}

function withByte(bytes: number[], at: number, value: number): number[] {
  const out = [...bytes];
  out[at] = value;
  return out;
}
