/**
 * Ephemeral signals (issue 4, "Typing and presence"): typing goes to the other members and is
 * never stored or replayed; a user is online while they hold a Subscribe stream, offline with a
 * last-seen time once all their streams are closed, and their conversation partners are told.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { expectCode, expectOneOfCodes } from "../helpers/expect.ts";
import {
  assertEphemeralEvent,
  assertNoneArrived,
  eventually,
  isMessage,
  openLiveFeed,
  type Feed,
} from "../helpers/feed.ts";
import { SHARED_TYPING_TTL_SECONDS, sharedRealtimeServer } from "../helpers/realtime.ts";

const TYPING_TTL_SECONDS = SHARED_TYPING_TTL_SECONDS;

describe("typing and presence", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    // The shared server has a non-default typing TTL, so the tests see the setting is honoured;
    // presence keeps its default TTL (30 s), so going offline within seconds of the last stream
    // closing cannot be a TTL expiry.
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(userId: string, protocol: Protocol, cursor?: string): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { cursor, label: `${userId}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  const typingOf = (conversationId: string, userId: string) => (e: Event) =>
    e.conversationId === conversationId && e.kind.case === "typing" && e.kind.value.userId === userId;
  const presenceOf = (userId: string, online: boolean) => (e: Event) =>
    e.kind.case === "presenceChanged" && e.kind.value.userId === userId && e.kind.value.online === online;

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("sends typing to the other members with an expiry, not to the typist, and never replays it", async () => {
        const [a, b, c] = await newUsers(server, 3, "typing");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fa = await live(a!, protocol);
        const fb = await live(b!, protocol);
        const fc = await live(c!, protocol);
        const first = await sendText(A, conv.id, "before typing");
        const { event: firstEvent } = await fb.waitForEvent(isMessage(conv.id, first.seq), "the message before typing");
        const resumeFrom = firstEvent.cursor;

        const sentAt = Date.now();
        await A.events.sendTyping({ conversationId: conv.id });
        for (const feed of [fb, fc]) {
          const { event } = await feed.waitForEvent(typingOf(conv.id, a!), "typing from a");
          assertEphemeralEvent(event);
          assert.equal(event.conversationId, conv.id);
          assert.equal(event.actorId, a, "actor_id is the typist");
          const expiresAt = event.kind.case === "typing" && event.kind.value.expiresAt;
          assert.ok(expiresAt, "expires_at is set");
          const ttl = timestampMs(expiresAt) - sentAt;
          assert.ok(
            ttl > (TYPING_TTL_SECONDS - 2) * 1000 && ttl < (TYPING_TTL_SECONDS + 2) * 1000,
            `expires_at is about TYPING_TTL_SECONDS=${TYPING_TTL_SECONDS} s after the call, got ${ttl} ms`,
          );
        }
        // Fence for a: b types back; a's own typing would have reached a before that.
        await server.clientsFor(b!, protocol).events.sendTyping({ conversationId: conv.id });
        await fa.waitForEvent(typingOf(conv.id, b!), "typing from b on a's stream");
        assertNoneArrived(fa, (f) => f.case === "event" && typingOf(conv.id, a!)(f.value), "the typist received their own typing");

        // Replay from before the typing: the later message comes back, the typing does not.
        const later = await sendText(A, conv.id, "after typing");
        await fb.waitForEvent(isMessage(conv.id, later.seq), "the message after typing");
        const replay = await live(b!, protocol, resumeFrom);
        const caughtUpAt = replay.received.findIndex((r) => r.frame.case === "caughtUp");
        const replayed = replay.received.slice(0, caughtUpAt).map((r) => r.frame);
        assert.ok(
          replayed.some((f) => f.case === "event" && isMessage(conv.id, later.seq)(f.value)),
          `the replay has the later message; got ${replay.summary()}`,
        );
        assertNoneArrived(replay, (f) => f.case === "event" && f.value.kind.case === "typing", "typing was replayed");
      });

      it("refuses typing in a conversation the caller is not in with NOT_FOUND", async () => {
        const [a, b, c, x] = await newUsers(server, 4, "typing-nf");
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        const X = server.clientsFor(x!, protocol);
        await expectCode(X.events.sendTyping({ conversationId: conv.id }), Code.NotFound);
        await expectOneOfCodes(X.events.sendTyping({ conversationId: "" }), [Code.InvalidArgument, Code.NotFound]);
      });

      it("shows a user online while they hold a stream and offline with last_seen_at after the last one closes, and tells partners", async () => {
        const [u, p, x] = await newUsers(server, 3, "presence");
        const P = server.clientsFor(p!, protocol);
        await createDirect(P, u!);
        const strangerConv = await createDirect(P, x!);
        const presenceOfU = async () => {
          const res = await P.events.getPresence({ userIds: [u!] });
          assert.equal(res.presences.length, 1, `one presence for u; got ${res.presences.length}`);
          return res.presences[0]!;
        };

        const never = await presenceOfU();
        assert.equal(never.userId, u);
        assert.equal(never.online, false, "a user who never subscribed is offline");
        assert.equal(never.lastSeenAt, undefined, "and has no last_seen_at");

        const fp = await live(p!, protocol);
        const fx = await live(x!, protocol);
        const openedAt = Date.now();
        const fu1 = await live(u!, protocol);
        await eventually(async () => (await presenceOfU()).online, "u online in GetPresence while u holds a stream");
        const { event: on } = await fp.waitForEvent(presenceOf(u!, true), "presence_changed(u, online) on the partner's stream");
        assertEphemeralEvent(on);
        assert.equal(on.conversationId, "", "a presence change belongs to no conversation");

        // A second stream, then the first closes: u still holds one, so u stays online.
        const fu2 = await live(u!, protocol);
        fu1.close();
        const probe = await sendText(P, (await createDirect(P, u!)).id, "still there?");
        await fu2.waitForEvent(isMessage(probe.conversationId, probe.seq), "a message on u's remaining stream");
        const middle = await presenceOfU();
        assert.equal(middle.online, true, "u is online while one of two streams remains");
        assertNoneArrived(fp, (f) => f.case === "event" && presenceOf(u!, false)(f.value), "u went offline while holding a stream");

        fu2.close();
        const closedAt = Date.now();
        // Polled back to back, so the first answer that says offline is the one checked.
        let gone = await presenceOfU();
        for (const deadline = Date.now() + 8_000; gone.online; gone = await presenceOfU()) {
          assert.ok(Date.now() < deadline, "u offline within 8 s of closing the last stream (presence TTL is 30 s)");
        }
        // The first answer that says offline must already say since when: last_seen_at is unset
        // only "if never, or while online".
        assert.ok(gone.lastSeenAt, "last_seen_at is set in the first GetPresence answer that shows u offline");
        const seen = timestampMs(gone.lastSeenAt);
        assert.ok(seen >= openedAt - 2000 && seen <= Date.now() + 2000, `last_seen_at ${new Date(seen).toISOString()} lies between the stream's opening and now`);
        assert.ok(seen >= closedAt - 15_000, "last_seen_at is recent");
        const { event: off } = await fp.waitForEvent(presenceOf(u!, false), "presence_changed(u, offline) on the partner's stream");
        assertEphemeralEvent(off);
        assert.ok(off.kind.case === "presenceChanged" && off.kind.value.lastSeenAt, "an offline change carries last_seen_at");

        // x shares no conversation with u: a fence message to x, then nothing about u.
        const fence = await sendText(P, strangerConv.id, "fence");
        await fx.waitForEvent(isMessage(strangerConv.id, fence.seq), "the fence message");
        assertNoneArrived(
          fx,
          (f) => f.case === "event" && f.value.kind.case === "presenceChanged" && f.value.kind.value.userId === u,
          "a user who shares no conversation with u was told about u's presence",
        );
      });
    });
  }

  it("answers GetPresence for existing users in request order, leaving unknown ids out", async () => {
    const [a, b] = await newUsers(server, 2, "presence-order");
    const res = await server.clientsFor(a!).events.getPresence({ userIds: [b!, uniqueId("nobody"), a!] });
    assert.deepEqual(res.presences.map((p) => p.userId), [b, a]);
  });

  it("rejects GetPresence for more than 100 users", async () => {
    const [a] = await newUsers(server, 1, "presence-many");
    const ids = Array.from({ length: 101 }, () => uniqueId("many"));
    await expectCode(server.clientsFor(a!).events.getPresence({ userIds: ids }), Code.InvalidArgument);
  });

  it("rejects SendTyping and GetPresence without credentials", async () => {
    const anon = server.clientsWithAuthorization(undefined);
    await expectCode(anon.events.getPresence({ userIds: ["x"] }), Code.Unauthenticated);
    await expectCode(anon.events.sendTyping({ conversationId: "x" }), Code.Unauthenticated);
  });
});
