/**
 * Restrictions are kept, not just remembered by a running node: after a restart on the same
 * data a banned user is still banned, a suspended one still suspended until the same time, and
 * a suspension that ends later still ends by itself. The reports and the audit log are there too.
 */
import assert from "node:assert/strict";
import { ModerationAction, ReportReason, ReportStatus, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { newUsers, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { openRestartableServers, type RestartableServers } from "../helpers/restartable-server.ts";
import {
  allRestrictions,
  assertRestriction,
  auditEntries,
  eventuallySucceeds,
  expectRestricted,
  getReport,
  msOf,
  report,
  secondsFromNow,
  userTarget,
  type Operator,
} from "./support.ts";

describe("moderation across a restart", function () {
  let servers: RestartableServers;
  let server: TestServer;
  before(async function () {
    this.timeout(60_000);
    servers = await openRestartableServers("parley-modrestart-");
    server = await servers.start();
  });
  after(async function () {
    this.timeout(30_000);
    await servers?.close();
  });

  it("keeps bans, suspensions, reports and the audit log; a suspension still ends at its time", async function () {
    this.timeout(90_000);
    const [banned, suspended, brief, peer] = await newUsers(server, 4, "restart");
    const conv = await createGroup(server.clientsFor(peer!, "grpc"), [banned!, suspended!, brief!]);
    const opId = "restart-operator";
    const op = (s: TestServer): Operator => ({ id: opId, clients: s.clientsFor(opId, "grpc", { roles: ["operator"] }) });

    const reportId = await report(server.clientsFor(peer!, "grpc"), userTarget(banned!), ReportReason.SPAM, "bot");
    await op(server).clients.admin.resolveReport({ reportId, action: ModerationAction.BAN, note: "bot account" });
    const until = secondsFromNow(3600);
    await op(server).clients.admin.restrictUser({ userId: suspended!, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "an hour" });
    // Long enough to outlast the restart, short enough to end within the test.
    const briefUntil = secondsFromNow(12);
    await op(server).clients.admin.restrictUser({ userId: brief!, action: ModerationAction.SUSPEND, suspendUntil: briefUntil, reason: "a moment" });
    const auditBefore = await auditEntries(op(server), { operatorId: opId });

    await server.stop();
    server = await servers.restart(server);

    const asBanned = { userId: banned!, kind: RestrictionKind.BANNED, reason: "bot account" };
    const asSuspended = { userId: suspended!, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "an hour" };
    const asBrief = { userId: brief!, kind: RestrictionKind.SUSPENDED, untilMs: msOf(briefUntil, "until"), reason: "a moment" };
    await expectRestricted(server.clientsFor(banned!, "grpc").users.getMe({}), asBanned, "the banned user after the restart");
    await expectRestricted(sendText(server.clientsFor(suspended!, "grpc"), conv.id, "hi"), asSuspended, "the suspended user after the restart");
    await server.clientsFor(suspended!, "grpc").messages.listMessages({ conversationId: conv.id });
    await expectRestricted(sendText(server.clientsFor(brief!, "grpc"), conv.id, "hi"), asBrief, "the briefly suspended user after the restart");
    await sendText(server.clientsFor(peer!, "grpc"), conv.id, "others write as before");

    const listed = await allRestrictions(op(server));
    assertRestriction(listed.find((r) => r.userId === banned), asBanned, "ListRestrictions: the ban");
    assertRestriction(listed.find((r) => r.userId === suspended), asSuspended, "ListRestrictions: the suspension");
    const r = await getReport(op(server), reportId);
    assert.equal(r.status, ReportStatus.RESOLVED, "the report stays resolved");
    assert.equal(r.resolution, ModerationAction.BAN);
    assert.deepEqual((await auditEntries(op(server), { operatorId: opId })).map((e) => e.id), auditBefore.map((e) => e.id), "the audit log is kept");

    const { at } = await eventuallySucceeds(() => sendText(server.clientsFor(brief!, "grpc"), conv.id, "back"), "the brief suspension's end", asBrief.untilMs - Date.now() + 6_000, 250);
    assert.ok(at >= asBrief.untilMs, "not before its end");
    await expectRestricted(server.clientsFor(banned!, "grpc").users.getMe({}), asBanned, "the ban does not end by itself");
  });
});
