/**
 * Issue 16, item 1: every operator action is in an audit log operators can list. Each
 * resolution (every action), RestrictUser and LiftRestriction is an entry with the operator,
 * the action, the user, the report, the end of a suspension and the note; ListAuditLog is
 * newest first, filters by operator and by user, and pages with no repeats and no gaps.
 */
import assert from "node:assert/strict";
import { ModerationAction, ReportReason, type AuditEntry } from "../../gen/parley/v1/moderation_pb.ts";
import { MAIN_PROTOCOLS, newUsers } from "../helpers/test-server.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import {
  actionName,
  auditEntries,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  report,
  secondsFromNow,
  userTarget,
  walkPages,
  type ModerationServer,
} from "./support.ts";

/** What one audit entry should say. */
interface Expected {
  action: ModerationAction;
  targetUserId: string;
  reportId: string;
  untilMs?: number;
  note: string;
  /** For a deletion: the message. */
  message?: { conversationId: string; seq: bigint };
  /** The target user may be left empty (a dismissal does nothing to anyone). */
  userOptional?: boolean;
}

/** Lets the clock move on, so the next action is strictly newer (a precondition, not an assertion). */
const tick = () => new Promise((r) => setTimeout(r, 5));

describe("AdminService.ListAuditLog", () => {
  let server: ModerationServer;
  before(async () => {
    server = await moderationServer();
  });

  function assertEntry(e: AuditEntry | undefined, x: Expected, opId: string, what: string): void {
    assert.ok(e, `${what}: an entry`);
    assert.ok(e.id, `${what}: an id`);
    assert.equal(e.operatorId, opId, `${what}: operator_id`);
    assert.equal(e.action, x.action, `${what}: action ${actionName(e.action)}`);
    if (x.userOptional) assert.ok(e.targetUserId === x.targetUserId || e.targetUserId === "", `${what}: target_user_id`);
    else assert.equal(e.targetUserId, x.targetUserId, `${what}: target_user_id`);
    assert.equal(e.reportId, x.reportId, `${what}: report_id`);
    if (x.untilMs !== undefined) assert.equal(msOf(e.until, `${what}: until`), x.untilMs, `${what}: until`);
    else assert.equal(e.until, undefined, `${what}: no until`);
    assert.equal(e.note, x.note, `${what}: note`);
    if (x.message) {
      assert.equal(e.target?.target.case, "message", `${what}: the target is the message`);
      const ref = e.target?.target.case === "message" ? e.target.target.value : undefined;
      assert.equal(ref?.conversationId, x.message.conversationId, `${what}: target conversation`);
      assert.equal(ref?.seq, x.message.seq, `${what}: target seq`);
    }
    assert.ok(Math.abs(msOf(e.createdAt, `${what}: created_at`) - Date.now()) < 120_000, `${what}: created_at is about now`);
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("records every action with who, what, whom, which report, until and note, newest first", async function () {
        this.timeout(60_000);
        const [author, reporter, other, banned, direct] = await newUsers(server, 5, "audit");
        const A = server.clientsFor(author!, protocol);
        const R = server.clientsFor(reporter!, protocol);
        const conv = await createGroup(A, [reporter!, other!]);
        const m1 = await sendText(A, conv.id, "one");
        const m2 = await sendText(A, conv.id, "two");
        const op = newOperator(server, protocol, "auditop");
        const admin = op.clients.admin;
        const done: Expected[] = [];

        const dismissed = await report(R, messageTarget(conv.id, m1.seq), ReportReason.SPAM);
        await admin.resolveReport({ reportId: dismissed, action: ModerationAction.DISMISS, note: "not spam" });
        done.push({ action: ModerationAction.DISMISS, targetUserId: author!, reportId: dismissed, note: "not spam", userOptional: true });
        await tick();
        const deleted = await report(R, messageTarget(conv.id, m2.seq), ReportReason.HATE);
        await admin.resolveReport({ reportId: deleted, action: ModerationAction.DELETE_CONTENT, note: "hateful" });
        done.push({ action: ModerationAction.DELETE_CONTENT, targetUserId: author!, reportId: deleted, note: "hateful", message: { conversationId: conv.id, seq: m2.seq } });
        await tick();
        const warned = await report(R, userTarget(author!), ReportReason.HARASSMENT);
        await admin.resolveReport({ reportId: warned, action: ModerationAction.WARN, note: "first warning" });
        done.push({ action: ModerationAction.WARN, targetUserId: author!, reportId: warned, note: "first warning" });
        await tick();
        const suspendedReport = await report(server.clientsFor(other!, protocol), userTarget(author!), ReportReason.HARASSMENT);
        const until = secondsFromNow(7200);
        await admin.resolveReport({ reportId: suspendedReport, action: ModerationAction.SUSPEND, suspendUntil: until, note: "two hours" });
        done.push({ action: ModerationAction.SUSPEND, targetUserId: author!, reportId: suspendedReport, untilMs: msOf(until, "until"), note: "two hours" });
        await tick();
        const bannedReport = await report(R, userTarget(banned!), ReportReason.ILLEGAL);
        await admin.resolveReport({ reportId: bannedReport, action: ModerationAction.BAN, note: "illegal goods" });
        done.push({ action: ModerationAction.BAN, targetUserId: banned!, reportId: bannedReport, note: "illegal goods" });
        await tick();
        const directUntil = secondsFromNow(900);
        await admin.restrictUser({ userId: direct!, action: ModerationAction.SUSPEND, suspendUntil: directUntil, reason: "bot-like" });
        done.push({ action: ModerationAction.SUSPEND, targetUserId: direct!, reportId: "", untilMs: msOf(directUntil, "until"), note: "bot-like" });
        await tick();
        await admin.restrictUser({ userId: direct!, action: ModerationAction.BAN, reason: "confirmed bot" });
        done.push({ action: ModerationAction.BAN, targetUserId: direct!, reportId: "", note: "confirmed bot" });
        await tick();
        await admin.liftRestriction({ userId: direct!, note: "false positive" });
        done.push({ action: ModerationAction.LIFT, targetUserId: direct!, reportId: "", note: "false positive" });
        await tick();
        await admin.liftRestriction({ userId: author!, note: "served enough" });
        done.push({ action: ModerationAction.LIFT, targetUserId: author!, reportId: "", note: "served enough" });
        await tick();
        await admin.liftRestriction({ userId: banned!, note: "appeal" });
        done.push({ action: ModerationAction.LIFT, targetUserId: banned!, reportId: "", note: "appeal" });

        const newestFirst = [...done].reverse();
        const entries = await auditEntries(op, { operatorId: op.id });
        assert.equal(entries.length, done.length, `one entry per action; got ${entries.map((e) => actionName(e.action)).join(", ")}`);
        newestFirst.forEach((x, i) => assertEntry(entries[i], x, op.id, `entry ${i} (${actionName(x.action)})`));
        const times = entries.map((e) => msOf(e.createdAt, "created_at"));
        assert.deepEqual([...times].sort((a, b) => b - a), times, "newest first");
        assert.equal(new Set(entries.map((e) => e.id)).size, entries.length, "distinct ids");

        // By user: only what was done to them.
        const onDirect = await auditEntries(op, { targetUserId: direct! });
        assert.deepEqual(onDirect.map((e) => e.action), [ModerationAction.LIFT, ModerationAction.BAN, ModerationAction.SUSPEND], "what was done to the directly restricted user");
        assert.ok(onDirect.every((e) => e.targetUserId === direct), "only that user");
        // A second operator's action on the same user shows under the user, not under the first operator.
        const op2 = newOperator(server, protocol, "auditop2");
        await op2.clients.admin.restrictUser({ userId: direct!, action: ModerationAction.BAN, reason: "again" });
        const both = await auditEntries(op, { targetUserId: direct! });
        assert.deepEqual(both.map((e) => e.operatorId), [op2.id, op.id, op.id, op.id], "both operators' actions on the user, newest first");
        assert.equal((await auditEntries(op, { operatorId: op.id })).length, done.length, "the first operator's log is unchanged");
        assert.deepEqual((await auditEntries(op, { operatorId: op.id, targetUserId: direct! })).length, 3, "both filters together");
        await op2.clients.admin.liftRestriction({ userId: direct! });

        // Without filters the newest entries are the latest actions.
        const latest = await admin.listAuditLog({ pageSize: 2 });
        assert.deepEqual(latest.entries.map((e) => e.operatorId), [op2.id, op2.id], "the deployment-wide log starts with the newest actions");
        assert.deepEqual(latest.entries.map((e) => e.action), [ModerationAction.LIFT, ModerationAction.BAN]);
      });
    });
  }

  it("pages with no repeats and no gaps; bad paging input is INVALID_ARGUMENT", async () => {
    const op = newOperator(server, "connect", "auditpage");
    const users = await newUsers(server, 7, "auditpage");
    for (const u of users) {
      await op.clients.admin.restrictUser({ userId: u, action: ModerationAction.BAN, reason: `ban ${u}` });
      await tick();
    }
    const all = await auditEntries(op, { operatorId: op.id });
    assert.deepEqual(all.map((e) => e.targetUserId), [...users].reverse(), "newest first");
    for (const pageSize of [1, 2, 3, 7]) {
      const pages = await walkPages(async (pageToken) => {
        const res = await op.clients.admin.listAuditLog({ operatorId: op.id, pageSize, pageToken });
        return { items: res.entries, nextPageToken: res.nextPageToken };
      });
      assert.deepEqual(pages.flat().map((e) => e.id), all.map((e) => e.id), `page_size ${pageSize}: every entry once, in order`);
      assert.ok(pages.every((p) => p.length <= pageSize), `page_size ${pageSize}: no page is longer`);
    }
    await expectInvalidArgument(op.clients.admin.listAuditLog({ pageSize: -1 }), "page_size");
    await expectInvalidArgument(op.clients.admin.listAuditLog({ pageSize: 100_000 }), "page_size");
    await expectInvalidArgument(op.clients.admin.listAuditLog({ pageToken: "not-a-token" }), "page_token");
    for (const u of users) await op.clients.admin.liftRestriction({ userId: u });
  });
});
