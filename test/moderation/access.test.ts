/**
 * Issue 16, item 1: only operators (a token with roles ["operator"]) may call AdminService.
 * Anyone else (a plain user, a service account, a conversation admin, the reported user)
 * gets PERMISSION_DENIED and learns nothing: the same error whether the report or user exists
 * or not, and before any check of the input. Their calls change nothing.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { ModerationAction, ReportReason, ReportStatus } from "../../gen/parley/v1/moderation_pb.ts";
import { ReportTargetKind } from "../../gen/parley/v1/admin_service_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId, type Clients, type Protocol } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { absentIdLike, createGroup, sendText } from "../helpers/fixtures.ts";
import { auditEntries, getReport, jsonOf, messageTarget, moderationServer, newOperator, report, secondsFromNow, allRestrictions, type ModerationServer } from "./support.ts";

/** Every AdminService call, with the ids it is about. */
function adminCalls(c: Clients, reportId: string, userId: string): { name: string; call: () => Promise<unknown> }[] {
  const until = secondsFromNow(600);
  return [
    { name: "ListReports", call: () => c.admin.listReports({}) },
    { name: "ListReports(filtered)", call: () => c.admin.listReports({ reportedUserId: userId, status: ReportStatus.OPEN, targetKind: ReportTargetKind.MESSAGE, reason: ReportReason.SPAM }) },
    { name: "GetReport", call: () => c.admin.getReport({ reportId }) },
    { name: "ResolveReport(DISMISS)", call: () => c.admin.resolveReport({ reportId, action: ModerationAction.DISMISS }) },
    { name: "ResolveReport(BAN)", call: () => c.admin.resolveReport({ reportId, action: ModerationAction.BAN, note: "x" }) },
    { name: "RestrictUser(SUSPEND)", call: () => c.admin.restrictUser({ userId, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "x" }) },
    { name: "RestrictUser(BAN)", call: () => c.admin.restrictUser({ userId, action: ModerationAction.BAN, reason: "x" }) },
    { name: "LiftRestriction", call: () => c.admin.liftRestriction({ userId }) },
    { name: "ListRestrictions", call: () => c.admin.listRestrictions({}) },
    { name: "ListAuditLog", call: () => c.admin.listAuditLog({}) },
    { name: "ListAuditLog(filtered)", call: () => c.admin.listAuditLog({ targetUserId: userId }) },
  ];
}

/** What a refusal tells the caller: its message and the reasons in its details. */
function shapeOf(err: ConnectError): string {
  return jsonOf({ message: err.rawMessage, reasons: err.findDetails(ErrorInfoSchema).map((i) => [i.reason, i.metadata]), details: err.details.length });
}

describe("AdminService for non-operators", () => {
  let server: ModerationServer;
  before(async () => {
    server = await moderationServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      async function setup(p: Protocol) {
        const [author, reporter, other] = await newUsers(server, 3, "acl");
        const A = server.clientsFor(author!, p);
        const conv = await createGroup(A, [reporter!, other!]);
        const m = await sendText(A, conv.id, "reported");
        const reportId = await report(server.clientsFor(reporter!, p), messageTarget(conv.id, m.seq), ReportReason.SPAM, "reporter's words");
        return { author: author!, reporter: reporter!, other: other!, A, conv, m, reportId };
      }

      it("refuses a plain user, a service account, a conversation admin and the reported user alike, whether things exist or not", async () => {
        const w = await setup(protocol);
        const op = newOperator(server, protocol);
        const callers: { who: string; clients: Clients }[] = [
          { who: "a plain user", clients: server.clientsFor(uniqueId("plain"), protocol) },
          { who: "a service account", clients: server.clientsFor(uniqueId("bot"), protocol, { roles: ["service"] }) },
          { who: "the conversation's admin (the reported user)", clients: w.A },
          { who: "the reporter", clients: server.clientsFor(w.reporter, protocol) },
        ];
        const ghostUser = uniqueId("ghost");
        for (const { who, clients } of callers) {
          const real = adminCalls(clients, w.reportId, w.author);
          const ghost = adminCalls(clients, absentIdLike(w.reportId), ghostUser);
          const malformed = adminCalls(clients, "not an id!", "");
          for (let i = 0; i < real.length; i++) {
            const name = `${who}: ${real[i]!.name}`;
            const a = await expectCode(real[i]!.call(), Code.PermissionDenied).catch((e: unknown) => assert.fail(`${name} (existing): ${String(e)}`));
            const b = await expectCode(ghost[i]!.call(), Code.PermissionDenied).catch((e: unknown) => assert.fail(`${name} (missing): ${String(e)}`));
            const c = await expectCode(malformed[i]!.call(), Code.PermissionDenied).catch((e: unknown) => assert.fail(`${name} (malformed): ${String(e)}`));
            assert.equal(shapeOf(a), shapeOf(b), `${name}: the same refusal whether the report/user exists or not`);
            assert.equal(shapeOf(a), shapeOf(c), `${name}: the same refusal for malformed input (no validation before the role check)`);
            for (const needle of [w.reporter, w.author, "reporter's words"]) {
              assert.ok(!a.rawMessage.includes(needle), `${name}: the refusal says nothing about the report`);
            }
          }
        }

        // None of it did anything.
        const r = await getReport(op, w.reportId);
        assert.equal(r.status, ReportStatus.OPEN, "the report is still open");
        assert.deepEqual(await auditEntries(op, { targetUserId: w.author }), [], "nothing in the audit log about the author");
        assert.ok(!(await allRestrictions(op)).some((x) => x.userId === w.author), "the author is not restricted");
        await sendText(w.A, w.conv.id, "still writing");
      });

      it("serves an operator, whose token grants the role", async () => {
        const w = await setup(protocol);
        const op = newOperator(server, protocol);
        for (const { name, call } of adminCalls(op.clients, w.reportId, w.author).filter((x) => !x.name.startsWith("ResolveReport") && !x.name.startsWith("RestrictUser"))) {
          await call().catch((e: unknown) => assert.fail(`${name} as an operator: ${String(e)}`));
        }
        // An operator with the service role too is still an operator.
        const both = server.clientsFor(uniqueId("opbot"), protocol, { roles: ["operator", "service"] });
        assert.equal((await both.admin.getReport({ reportId: w.reportId })).report?.id, w.reportId);
      });
    });
  }

  it("answers UNAUTHENTICATED without a token", async () => {
    const anonymous = server.clientsWithAuthorization(undefined, "connect");
    await expectCode(anonymous.admin.listReports({}), Code.Unauthenticated);
    await expectCode(anonymous.reports.createReport({}), Code.Unauthenticated);
  });
});
