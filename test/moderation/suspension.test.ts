/**
 * Issue 16, item 1 and its test list: report → suspend → streams closed → writes refused →
 * suspension ends → writes work. A suspended user gets PERMISSION_DENIED on every write with
 * ErrorInfo ACCOUNT_SUSPENDED (metadata `until`, RFC 3339) and a parley.v1.AccountRestriction
 * detail; reads still work; their open streams get account_moderated(SUSPEND) and then an
 * ending frame with ACCOUNT_RESTRICTED; Subscribe is refused until the suspension ends; at its
 * time everything works again without an operator. Others still see what they wrote before.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { ModerationAction, ReportReason, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { MAIN_PROTOCOLS } from "../helpers/test-server.ts";
import { describeError, isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sendText } from "../helpers/fixtures.ts";
import {
  allRestrictions,
  assertAllEndedByRestriction,
  subscribeStorm,
  assertRestriction,
  assertRestrictedError,
  eventuallySucceeds,
  expectRestricted,
  expectStreamRestricted,
  historySeenBy,
  jsonOf,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  readProbes,
  report,
  secondsFromNow,
  userWorld,
  writeProbes,
  type ExpectedRestriction,
  type ModerationServer,
} from "./support.ts";

/** Events a refused write would have caused. */
const WRITE_EVENTS = new Set(["messageCreated", "messageEdited", "messageDeleted", "reactionAdded", "readPositionMoved", "memberRemoved", "typing", "conversationUpdated"]);

describe("suspensions", () => {
  let server: ModerationServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await moderationServer();
  });
  const isolated: { close(): void }[] = [];
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
    for (const c of isolated.splice(0)) c.close();
  });
  /** Clients on a connection of their own (a second device), closed after the test. */
  function ownConnection<T extends { close(): void }>(clients: T): T {
    isolated.push(clients);
    return clients;
  }

  /** Subscribes and expects the restricted user's refusal (the stream fails before any event). */
  async function expectSubscribeRefused(feed: Feed, expected: ExpectedRestriction, what: string): Promise<void> {
    feeds.push(feed);
    const end = await feed.ended(what);
    assert.ok(end.error, `${what}: Subscribe fails; received ${feed.summary()}`);
    assertRestrictedError(end.error, expected, what);
    assert.equal(feed.events.length, 0, `${what}: no event arrives; received ${feed.summary()}`);
  }

  it("tells browsers and curl the same: the details over Connect JSON and gRPC-Web, reads as GET", async () => {
    const w = await userWorld(server, "connect", "suspweb");
    const op = newOperator(server, "connect");
    const until = secondsFromNow(600);
    await op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "web too" });
    const expected: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "web too" };
    for (const protocol of ["connect-json", "grpc-web", "connect-get"] as const) {
      const c = server.clientsFor(w.userId, protocol);
      await expectRestricted(sendText(c, w.convId, "hi"), expected, `SendMessage over ${protocol}`);
      await c.messages.listMessages({ conversationId: w.convId });
      await c.users.getMe({});
    }
    await op.clients.admin.liftRestriction({ userId: w.userId });
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("no stream outlives a suspension, even one opened while it is being made", async function () {
        this.timeout(30_000);
        const w = await userWorld(server, protocol, "susprace");
        const op = newOperator(server, protocol);
        const before = await openLiveFeed(w.clients, { label: `before/${protocol}` });
        const cursor = before.lastCursor;
        before.close();
        const until = secondsFromNow(600);
        const expected: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "race" };
        const storm = await subscribeStorm(
          w.clients,
          () => op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "race" }),
          `storm/${protocol}`,
          cursor,
        );
        feeds.push(...storm);
        await assertAllEndedByRestriction(storm, expected);
        await op.clients.admin.liftRestriction({ userId: w.userId });
      });

      it("report → suspend: the user's streams end, every write is refused with the end time, reads still work", async function () {
        this.timeout(60_000);
        const w = await userWorld(server, protocol, "susp");
        const op = newOperator(server, protocol);
        // Two devices of the user, live.
        const phone = await openLiveFeed(w.clients, { label: `user-phone/${protocol}` });
        const laptop = await openLiveFeed(ownConnection(server.isolatedClientsFor(w.userId, protocol)), { label: `user-laptop/${protocol}` });
        feeds.push(phone, laptop);
        const peerFeed = await openLiveFeed(w.peer, { label: `peer/${protocol}` });
        feeds.push(peerFeed);
        const historyBefore = await historySeenBy(w.peer, w.convId);

        const reportId = await report(w.peer, messageTarget(w.convId, w.ownSeq), ReportReason.HARASSMENT, "rude");
        const until = secondsFromNow(3600);
        const untilMs = msOf(until, "until");
        const note = "You are suspended for an hour.";
        const res = await op.clients.admin.resolveReport({ reportId, action: ModerationAction.SUSPEND, suspendUntil: until, note });
        const expected: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs, reason: note };
        assertRestriction(res.restriction, expected, "ResolveReport's restriction");

        // Streams closed: the event, then the ending, on every device.
        const endings = await Promise.all([phone, laptop].map((f) => expectStreamRestricted(f, { action: ModerationAction.SUSPEND, untilMs, reason: note })));
        // Writes refused, each with the details.
        for (const probe of writeProbes(w)) await expectRestricted(probe.call(), expected, probe.name);
        // Reads work.
        for (const probe of readProbes(w)) {
          try {
            await probe.call();
          } catch (err) {
            assert.fail(`${probe.name}: a suspended user may still read; got ${describeError(ConnectError.from(err))}`);
          }
        }
        const own = (await w.clients.messages.listMessages({ conversationId: w.convId })).messages.find((m) => m.seq === w.ownSeq);
        assert.equal(own?.content.case === "text" ? own.content.value : "", w.ownText, "the suspended user reads their own earlier message");

        // Nothing the refused writes would have done happened; others still see the earlier messages.
        assert.deepEqual(await historySeenBy(w.peer, w.convId), historyBefore, "the peer sees the same history, the suspended user's messages included");
        const followers = await w.peer.social.listFollowers({ userId: w.peerId });
        assert.ok(!jsonOf(followers).includes(w.userId), "the refused Follow did not happen");
        const writesSeen = peerFeed.events.filter((e) => e.actorId === w.userId && WRITE_EVENTS.has(e.kind.case ?? ""));
        assert.deepEqual(writesSeen.map((e) => e.kind.case), [], `the peer got no event of a refused write; received ${peerFeed.summary()}`);

        // Subscribe refused, with a cursor or without.
        await expectSubscribeRefused(openFeed(w.clients, { label: `resubscribe/${protocol}` }), expected, "Subscribe without a cursor");
        await expectSubscribeRefused(openFeed(w.clients, { cursor: endings[0]!.cursor, label: `resume/${protocol}` }), expected, "Subscribe with the ending's cursor");

        const listed = (await allRestrictions(op)).filter((r) => r.userId === w.userId);
        assert.equal(listed.length, 1, "ListRestrictions shows the suspension");
        assertRestriction(listed[0], expected, "ListRestrictions");

        assert.equal((await op.clients.admin.liftRestriction({ userId: w.userId, note: "cleanup" })).lifted, true);
      });

      it("report → short suspension → it ends at its time by itself: writes and Subscribe work again", async function () {
        this.timeout(40_000);
        const w = await userWorld(server, protocol, "expiry");
        const op = newOperator(server, protocol);
        const feed = await openLiveFeed(w.clients, { label: `user/${protocol}` });
        feeds.push(feed);
        const reportId = await report(w.peer, messageTarget(w.convId, w.ownSeq), ReportReason.SPAM);
        const until = secondsFromNow(3);
        const untilMs = msOf(until, "until");
        const note = "a short break";
        await op.clients.admin.resolveReport({ reportId, action: ModerationAction.SUSPEND, suspendUntil: until, note });
        const expected: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs, reason: note };
        await expectStreamRestricted(feed, { action: ModerationAction.SUSPEND, untilMs, reason: note });
        await expectRestricted(sendText(w.clients, w.convId, "now?"), expected, "SendMessage during the suspension");
        await expectSubscribeRefused(openFeed(w.clients, { label: `during/${protocol}` }), expected, "Subscribe during the suspension");

        // Keep trying as a client would; nothing may get through before the end time.
        const attempts: { at: number; ok: boolean; code?: Code }[] = [];
        const { at: firstOk } = await eventuallySucceeds(
          async () => {
            const at = Date.now();
            try {
              const m = await sendText(w.clients, w.convId, "back again");
              attempts.push({ at, ok: true });
              return m;
            } catch (err) {
              attempts.push({ at, ok: false, code: ConnectError.from(err).code });
              throw err;
            }
          },
          "SendMessage after the suspension's end",
          untilMs - Date.now() + 6_000,
          250,
        );
        const early = attempts.filter((a) => a.ok && a.at < untilMs);
        assert.deepEqual(early, [], `no write got through before ${new Date(untilMs).toISOString()}`);
        assert.ok(attempts.filter((a) => !a.ok).every((a) => a.code === Code.PermissionDenied), "until then every write was PERMISSION_DENIED");
        assert.ok(firstOk - untilMs < 5_000, `writes work again within 5 s of the end (took ${firstOk - untilMs} ms)`);

        // Subscribe works again and is live.
        const back = await openLiveFeed(w.clients, { label: `after/${protocol}` });
        feeds.push(back);
        const m = await sendText(w.peer, w.convId, "welcome back");
        await back.waitForEvent(isMessage(w.convId, m.seq), "a message on the new stream");
        assert.ok(!(await allRestrictions(op)).some((r) => r.userId === w.userId), "ListRestrictions no longer shows the ended suspension");
      });
    });
  }
});
