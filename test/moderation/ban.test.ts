/**
 * Issue 16, item 1 and its test list: report → ban → streams closed → every call refused →
 * lifted → everything works. A banned user may call nothing but UserService.DeleteAccount
 * (PERMISSION_DENIED with ErrorInfo ACCOUNT_BANNED and an AccountRestriction detail); an operator
 * lifts a ban at once. RestrictUser suspends or bans without a report; ListRestrictions shows
 * what is in force. Bad input writes nothing.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ModerationAction, ReportReason, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { sendText } from "../helpers/fixtures.ts";
import { isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import {
  accountModerated,
  allRestrictions,
  assertRestriction,
  assertRestrictedError,
  auditEntries,
  expectRestricted,
  expectStreamRestricted,
  historySeenBy,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  readProbes,
  report,
  secondsFromNow,
  userWorld,
  walkPages,
  writeProbes,
  type ExpectedRestriction,
  type ModerationServer,
} from "./support.ts";

describe("bans and RestrictUser", () => {
  let server: ModerationServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await moderationServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("report → ban: streams end, every call but DeleteAccount is refused, and a lift restores everything at once", async function () {
        this.timeout(60_000);
        const w = await userWorld(server, protocol, "ban");
        const op = newOperator(server, protocol);
        const feed = await openLiveFeed(w.clients, { label: `user/${protocol}` });
        feeds.push(feed);
        const historyBefore = await historySeenBy(w.peer, w.convId);

        const reportId = await report(w.peer, messageTarget(w.convId, w.ownSeq), ReportReason.VIOLENCE, "threats");
        const note = "Banned for threats.";
        const res = await op.clients.admin.resolveReport({ reportId, action: ModerationAction.BAN, note, suspendUntil: secondsFromNow(60) });
        const expected: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.BANNED, reason: note };
        assertRestriction(res.restriction, expected, "ResolveReport's restriction (suspend_until is ignored for a ban)");

        const ending = await expectStreamRestricted(feed, { action: ModerationAction.BAN, reason: note });
        for (const probe of [...writeProbes(w), ...readProbes(w)]) await expectRestricted(probe.call(), expected, probe.name);
        const refused = openFeed(w.clients, { label: `resubscribe/${protocol}` });
        feeds.push(refused);
        const end = await refused.ended("Subscribe while banned");
        assert.ok(end.error, "Subscribe fails while banned");
        assertRestrictedError(end.error, expected, "Subscribe while banned");

        // The way out stays open: DeleteAccount reaches the service (a wrong confirmation is the
        // caller's mistake, so nothing is deleted here; the next test deletes for real).
        await expectInvalidArgument(w.clients.users.deleteAccount({ confirmUserId: `${w.userId}-not-me` }), "confirm_user_id");

        assert.deepEqual(await historySeenBy(w.peer, w.convId), historyBefore, "others still see what the banned user wrote");
        const listed = (await allRestrictions(op)).filter((r) => r.userId === w.userId);
        assert.equal(listed.length, 1, "ListRestrictions shows the ban");
        assertRestriction(listed[0], expected, "ListRestrictions");

        // Lifted: everything works at once.
        const lifted = await op.clients.admin.liftRestriction({ userId: w.userId, note: "appeal accepted" });
        assert.equal(lifted.lifted, true, "lifted=true");
        await w.clients.users.getMe({});
        await sendText(w.clients, w.convId, "thank you");
        const resumed = openFeed(w.clients, { cursor: ending.cursor, label: `resumed/${protocol}` });
        feeds.push(resumed);
        await resumed.caughtUp();
        const { event } = await resumed.waitForEvent((e) => accountModerated(e)?.action === ModerationAction.LIFT, "account_moderated(LIFT) replayed after the ending's cursor");
        assert.equal(accountModerated(event)?.reason, "appeal accepted");
        const m = await sendText(w.peer, w.convId, "welcome back");
        await resumed.waitForEvent(isMessage(w.convId, m.seq), "a live message after the lift");
        assert.ok(!(await allRestrictions(op)).some((r) => r.userId === w.userId), "ListRestrictions no longer shows it");
        assert.equal((await op.clients.admin.liftRestriction({ userId: w.userId })).lifted, false, "lifting again: nothing was in force");
      });

      it("a banned user may still delete their account: their messages become tombstones", async function () {
        this.timeout(30_000);
        const w = await userWorld(server, protocol, "banerase");
        const op = newOperator(server, protocol);
        await op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.BAN, reason: "spam" });
        await expectRestricted(w.clients.users.getMe({}), { userId: w.userId, kind: RestrictionKind.BANNED, reason: "spam" }, "GetMe while banned");
        const res = await w.clients.users.deleteAccount({ confirmUserId: w.userId });
        assert.ok(res.messagesErased >= 1n, `messages_erased counts the user's message (${res.messagesErased})`);
        const theirs = (await w.peer.messages.getMessage({ conversationId: w.convId, seq: w.ownSeq })).message!;
        assert.equal(theirs.content.case, undefined, "the banned user's message is a tombstone now");
        assert.ok(theirs.deletion, "with a deletion");
      });

      it("RestrictUser suspends or bans without a report; a new restriction replaces the earlier one", async () => {
        const w = await userWorld(server, protocol, "restrict");
        const op = newOperator(server, protocol);
        const feed = await openLiveFeed(w.clients, { label: `user/${protocol}` });
        feeds.push(feed);

        const until = secondsFromNow(1800);
        const before = Date.now();
        const suspended = await op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "spam wave" });
        const asSuspended: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "spam wave" };
        assertRestriction(suspended.restriction, asSuspended, "RestrictUser SUSPEND");
        const createdAt = msOf(suspended.restriction?.createdAt, "created_at");
        assert.ok(createdAt >= before - 5_000 && createdAt <= Date.now() + 5_000, "created_at is about now");
        await expectStreamRestricted(feed, { action: ModerationAction.SUSPEND, untilMs: asSuspended.untilMs, reason: "spam wave" });
        await expectRestricted(sendText(w.clients, w.convId, "hi"), asSuspended, "SendMessage while suspended");
        await w.clients.users.getMe({});

        const banned = await op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.BAN, reason: "repeat offender" });
        const asBanned: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.BANNED, reason: "repeat offender" };
        assertRestriction(banned.restriction, asBanned, "RestrictUser BAN");
        await expectRestricted(w.clients.users.getMe({}), asBanned, "GetMe after the ban replaced the suspension");
        let listed = (await allRestrictions(op)).filter((r) => r.userId === w.userId);
        assert.equal(listed.length, 1, "one restriction in force");
        assertRestriction(listed[0], asBanned, "ListRestrictions after the ban");

        const later = secondsFromNow(600);
        await op.clients.admin.restrictUser({ userId: w.userId, action: ModerationAction.SUSPEND, suspendUntil: later, reason: "reduced" });
        const asReduced: ExpectedRestriction = { userId: w.userId, kind: RestrictionKind.SUSPENDED, untilMs: msOf(later, "later"), reason: "reduced" };
        await w.clients.users.getMe({});
        await expectRestricted(sendText(w.clients, w.convId, "hi"), asReduced, "SendMessage after the suspension replaced the ban");
        listed = (await allRestrictions(op)).filter((r) => r.userId === w.userId);
        assert.equal(listed.length, 1, "still one restriction in force");
        assertRestriction(listed[0], asReduced, "ListRestrictions after the suspension replaced the ban");
        assert.equal((await op.clients.admin.liftRestriction({ userId: w.userId })).lifted, true);
        await sendText(w.clients, w.convId, "free");
      });
    });
  }

  describe("bad input changes nothing", () => {
    const protocol = "connect" as const;

    it("RestrictUser: NOT_FOUND for an unknown user; INVALID_ARGUMENT for another action, a missing user or no future suspend_until", async () => {
      const [target] = await newUsers(server, 1, "rbad");
      const T = server.clientsFor(target!, protocol);
      const op = newOperator(server, protocol);
      const future = secondsFromNow(600);
      await expectCode(op.clients.admin.restrictUser({ userId: uniqueId("ghost"), action: ModerationAction.BAN, reason: "x" }), Code.NotFound);
      await expectCode(op.clients.admin.restrictUser({ userId: uniqueId("ghost"), action: ModerationAction.SUSPEND, suspendUntil: future, reason: "x" }), Code.NotFound);
      await expectInvalidArgument(op.clients.admin.restrictUser({ userId: "", action: ModerationAction.BAN, reason: "x" }), "user_id");
      for (const action of [ModerationAction.UNSPECIFIED, ModerationAction.DISMISS, ModerationAction.DELETE_CONTENT, ModerationAction.WARN, ModerationAction.LIFT, 42 as ModerationAction]) {
        await expectInvalidArgument(op.clients.admin.restrictUser({ userId: target!, action, suspendUntil: future, reason: "x" }), "action");
      }
      await expectInvalidArgument(op.clients.admin.restrictUser({ userId: target!, action: ModerationAction.SUSPEND, reason: "x" }), "suspend_until");
      await expectInvalidArgument(
        op.clients.admin.restrictUser({ userId: target!, action: ModerationAction.SUSPEND, suspendUntil: timestampFromMs(Date.now() - 1_000), reason: "x" }),
        "suspend_until",
      );
      assert.deepEqual(await auditEntries(op, { operatorId: op.id }), [], "nothing in the audit log");
      assert.ok(!(await allRestrictions(op)).some((r) => r.userId === target), "the user is not restricted");
      await T.conversations.listConversations({});
      await T.users.updateProfile({ displayName: "unharmed" });
    });

    it("LiftRestriction: lifted=false when nothing is in force, INVALID_ARGUMENT for a missing user id", async () => {
      const [target] = await newUsers(server, 1, "lbad");
      const op = newOperator(server, protocol);
      assert.equal((await op.clients.admin.liftRestriction({ userId: target! })).lifted, false);
      await expectInvalidArgument(op.clients.admin.liftRestriction({ userId: "" }), "user_id");
      await server.clientsFor(target!, protocol).users.updateProfile({ displayName: "unharmed" });
    });

    it("ListRestrictions pages by user id with no repeats and no gaps; bad paging input is INVALID_ARGUMENT", async () => {
      const op = newOperator(server, protocol);
      const users = await newUsers(server, 5, "lrpage");
      for (const u of users) await op.clients.admin.restrictUser({ userId: u, action: ModerationAction.BAN, reason: "paging" });
      const pages = await walkPages(async (pageToken) => {
        const res = await op.clients.admin.listRestrictions({ pageSize: 2, pageToken });
        return { items: res.restrictions, nextPageToken: res.nextPageToken };
      });
      const ids = pages.flat().map((r) => r.userId);
      assert.ok(pages.every((p) => p.length <= 2), "no page is longer than page_size");
      assert.equal(new Set(ids).size, ids.length, "no user twice");
      for (const u of users) assert.ok(ids.includes(u), `${u} is listed`);
      // Ours differ first in a digit, so any collation orders them the same way.
      const ours = ids.filter((id) => users.includes(id));
      assert.deepEqual(ours, [...users].sort(), "by user id");
      await expectInvalidArgument(op.clients.admin.listRestrictions({ pageSize: -1 }), "page_size");
      await expectInvalidArgument(op.clients.admin.listRestrictions({ pageSize: 100_000 }), "page_size");
      await expectInvalidArgument(op.clients.admin.listRestrictions({ pageToken: "not-a-token" }), "page_token");
      for (const u of users) await op.clients.admin.liftRestriction({ userId: u });
    });
  });
});
