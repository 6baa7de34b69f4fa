/**
 * The time windows of the feed, on one node configured with short ones:
 * - a cursor too old to replay (EVENT_REPLAY_WINDOW_SECONDS, issue 4 "Resume") gets an explicit
 *   resync_required, never a silent gap;
 * - the presence registry TTL (PRESENCE_TTL_SECONDS, issue 4 "Typing and presence"): an open
 *   stream keeps its user online past the TTL, so the registry entry is refreshed.
 */
import assert from "node:assert/strict";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { describeError, eventually, isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";

const WINDOW_SECONDS = 1;
const PRESENCE_TTL_SECONDS = 2;

describe("time windows", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  /** A stream opened first thing, held through the other tests, for the presence TTL test. */
  const held: { feed?: Feed; user?: string; partner?: string; openedAt?: number } = {};
  before(async function () {
    this.timeout(30_000);
    server = await startRealtimeServer({
      EVENT_REPLAY_WINDOW_SECONDS: String(WINDOW_SECONDS),
      PRESENCE_TTL_SECONDS: String(PRESENCE_TTL_SECONDS),
    });
    const [u, p] = await newUsers(server, 2, "ttl");
    held.user = u;
    held.partner = p;
    held.feed = await openLiveFeed(server.clientsFor(u!, "grpc"), { label: "u/held" });
    held.openedAt = Date.now();
  });
  after(async () => {
    held.feed?.close();
    for (const f of feeds) f.close();
    await server?.stop();
  });

  describe("Subscribe with a cursor beyond the replay window", () => {
    afterEach(() => {
      for (const f of feeds.splice(0)) f.close();
    });

    const track = (f: Feed) => (feeds.push(f), f);
    /** Precondition: let the replay window pass. Not an assertion. */
    const outlive = () => new Promise((r) => setTimeout(r, WINDOW_SECONDS * 1000 + 600));

    /**
     * Both protocols' users are set up first and the window is outlived once: for each, a cursor
     * from before a message, stale once the window has passed.
     */
    interface Setup {
      a: string;
      b: string;
      conversationId: string;
      m1Seq: bigint;
      /** The first cursor, from before m1. */
      beforeM1: string;
    }
    const setups = new Map<string, Setup>();

    describe("once the replay window has passed", () => {
      before(async function () {
        this.timeout(30_000);
        for (const protocol of MAIN_PROTOCOLS) {
          const [a, b, c] = await newUsers(server, 3, "stale");
          const A = server.clientsFor(a!, protocol);
          const conv = await createGroup(A, [b!, c!]);
          const fb = await openLiveFeed(server.clientsFor(b!, protocol), { label: `b/${protocol}` });
          const beforeM1 = fb.lastCursor;
          const m1 = await sendText(A, conv.id, "too old to replay soon");
          await fb.waitForEvent(isMessage(conv.id, m1.seq), "m1");
          fb.close();
          assert.ok(beforeM1, `the stream's first frame carries a cursor; got ${fb.summary()}`);
          setups.set(protocol, { a: a!, b: b!, conversationId: conv.id, m1Seq: m1.seq, beforeM1 });
        }
        await outlive();
      });

      for (const protocol of MAIN_PROTOCOLS) {
        describe(`over ${protocol}`, () => {
          it("answers a cursor whose next event is older than the replay window with resync_required and a fresh cursor, then ends", async () => {
            const { a, b, conversationId, m1Seq, beforeM1 } = setups.get(protocol)!;
            const stale = track(openFeed(server.clientsFor(b, protocol), { cursor: beforeM1, label: "b/stale" }));
            const { value: resync, index } = await stale.waitFor(
              (f) => (f.case === "resyncRequired" ? f.value : undefined),
              "resync_required for a cursor beyond the window",
            );
            assert.ok(resync.reason, "resync_required says why");
            assert.ok(resync.cursor, "resync_required carries a fresh cursor");
            assert.equal(index, 0, `resync_required comes first, nothing replayed before it; got ${stale.summary()}`);
            const end = await stale.ended("after resync_required");
            assert.equal(end.error, null, `the stream ends cleanly after resync_required; ${end.error ? describeError(end.error) : ""}`);
            assert.equal(stale.received.length, 1, `nothing after resync_required; got ${stale.summary()}`);

            // The fresh cursor subscribes from now: no replay of m1, then live.
            const fresh = track(await openLiveFeed(server.clientsFor(b, protocol), { cursor: resync.cursor, label: "b/fresh" }));
            const m2 = await sendText(server.clientsFor(a, protocol), conversationId, "after the resync");
            await fresh.waitForEvent(isMessage(conversationId, m2.seq), "m2 on the stream opened with the resync cursor");
            assert.ok(!fresh.events.some(isMessage(conversationId, m1Seq)), `m1 is not replayed after a resync; got ${fresh.summary()}`);
          });
        });
      }
    });
  });

  describe("presence registry", () => {
    it("keeps a user online past the registry TTL while their stream stays open", async function () {
      this.timeout(20_000);
      const P = server.clientsFor(held.partner!);
      const online = async () => (await P.events.getPresence({ userIds: [held.user!] })).presences[0]?.online === true;
      await eventually(online, "u online while holding a stream");
      // Precondition, not an assertion: the stream has been open for 2.5 TTLs, so an entry that
      // is not refreshed would have expired.
      const holdUntil = held.openedAt! + 2.5 * PRESENCE_TTL_SECONDS * 1000;
      if (Date.now() < holdUntil) await new Promise((r) => setTimeout(r, holdUntil - Date.now()));
      assert.equal(await online(), true, `still online ${Date.now() - held.openedAt!} ms into a stream with PRESENCE_TTL_SECONDS=${PRESENCE_TTL_SECONDS}`);
      assert.equal(held.feed!.end, undefined, "the stream is still open");
    });
  });
});
