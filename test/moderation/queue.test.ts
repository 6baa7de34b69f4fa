/**
 * Issue 16, item 1: the moderation queue. AdminService.ListReports lists reports oldest first,
 * filtered by status, reason, reported user and target kind, in pages with no repeats and no
 * gaps; GetReport returns one report.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ReportTargetKind } from "../../gen/parley/v1/admin_service_pb.ts";
import { ModerationAction, ReportReason, ReportStatus, type Report } from "../../gen/parley/v1/moderation_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { absentIdLike, clockPast, createGroup, sendText } from "../helpers/fixtures.ts";
import { postStory } from "../stories/support.ts";
import {
  getReport,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  reportsAbout,
  storyTarget,
  userTarget,
  walkPages,
  type ModerationServer,
} from "./support.ts";

describe("AdminService moderation queue", () => {
  let server: ModerationServer;
  before(async () => {
    server = await moderationServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("lists reports oldest first, filtered by reported user, target kind, reason and status", async () => {
        const [target, r1, r2, r3, r4] = await newUsers(server, 5, "queue");
        const T = server.clientsFor(target!, protocol);
        const op = newOperator(server, protocol);
        const conv = await createGroup(T, [r1!, r2!]);
        const m = await sendText(T, conv.id, "reported words");
        const story = await postStory(T, StoryPrivacy.PUBLIC, { caption: "reported caption" });

        // Made one after another, each at a strictly later time.
        const made: string[] = [];
        const make = async (reporter: string, t: ReturnType<typeof userTarget>, reason: ReportReason) => {
          const res = await server.clientsFor(reporter, protocol).reports.createReport({ target: { target: t }, reason });
          made.push(res.reportId);
          await clockPast(res.createdAt);
        };
        await make(r1!, messageTarget(conv.id, m.seq), ReportReason.SPAM);
        await make(r2!, storyTarget(story.id), ReportReason.HATE);
        await make(r3!, userTarget(target!), ReportReason.HARASSMENT);
        await make(r4!, userTarget(target!), ReportReason.SPAM);
        const [msgReport, storyReport, userReport3, userReport4] = made;

        const all = await reportsAbout(op, target!);
        assert.deepEqual(all.map((r) => r.id), made, "every report about the user, oldest first");
        assertOldestFirst(all);
        assert.deepEqual(all.map((r) => r.reporterId), [r1, r2, r3, r4]);
        assert.ok(all.every((r) => r.reportedUserId === target), "all are about the user");

        const ids = (reports: Report[]) => reports.map((r) => r.id);
        assert.deepEqual(ids(await reportsAbout(op, target!, { targetKind: ReportTargetKind.MESSAGE })), [msgReport]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { targetKind: ReportTargetKind.STORY })), [storyReport]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { targetKind: ReportTargetKind.USER })), [userReport3, userReport4]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { reason: ReportReason.SPAM })), [msgReport, userReport4]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { reason: ReportReason.SPAM, targetKind: ReportTargetKind.USER })), [userReport4]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { reason: ReportReason.VIOLENCE })), []);

        await op.clients.admin.resolveReport({ reportId: userReport3!, action: ModerationAction.DISMISS, note: "not harassment" });
        assert.deepEqual(ids(await reportsAbout(op, target!, { status: ReportStatus.OPEN })), [msgReport, storyReport, userReport4]);
        assert.deepEqual(ids(await reportsAbout(op, target!, { status: ReportStatus.RESOLVED })), [userReport3]);
        assert.deepEqual(ids(await reportsAbout(op, target!)), made, "without a status filter, both");

        // Filters without a reported user: every report across the deployment that matches.
        const everywhere = (
          await walkPages(async (pageToken) => {
            const res = await op.clients.admin.listReports({ reason: ReportReason.HATE, status: ReportStatus.OPEN, pageSize: 50, pageToken });
            return { items: res.reports, nextPageToken: res.nextPageToken };
          })
        ).flat();
        assert.ok(everywhere.some((r) => r.id === storyReport), "the HATE report is among all open HATE reports");
        assert.ok(everywhere.every((r) => r.reason === ReportReason.HATE && r.status === ReportStatus.OPEN), "only open HATE reports");
        assertOldestFirst(everywhere);
      });

      it("pages through the queue with no repeats and no gaps", async () => {
        const [target, ...reporters] = await newUsers(server, 8, "qpage");
        const op = newOperator(server, protocol);
        const made: string[] = [];
        for (const r of reporters) {
          const res = await server.clientsFor(r, protocol).reports.createReport({ target: { target: userTarget(target!) }, reason: ReportReason.SPAM });
          made.push(res.reportId);
          await clockPast(res.createdAt);
        }
        for (const pageSize of [1, 3, 7, 100]) {
          const pages = await walkPages(async (pageToken) => {
            const res = await op.clients.admin.listReports({ reportedUserId: target!, pageSize, pageToken });
            return { items: res.reports, nextPageToken: res.nextPageToken };
          });
          assert.deepEqual(pages.flat().map((r) => r.id), made, `page_size ${pageSize}: every report once, oldest first`);
          assert.ok(pages.every((p) => p.length <= pageSize), `page_size ${pageSize}: no page is longer`);
          assert.ok(pages.slice(0, -1).every((p) => p.length === pageSize), `page_size ${pageSize}: full pages until the last`);
        }
        // Reports made while paging do not shift the pages already given out.
        const first = await op.clients.admin.listReports({ reportedUserId: target!, pageSize: 4 });
        const [late] = await newUsers(server, 1, "qlate");
        const lateReport = await server.clientsFor(late!, protocol).reports.createReport({ target: { target: userTarget(target!) }, reason: ReportReason.SPAM });
        const rest = (
          await walkPages(async (pageToken) => {
            const res = await op.clients.admin.listReports({ reportedUserId: target!, pageSize: 4, pageToken: pageToken || first.nextPageToken });
            return { items: res.reports, nextPageToken: res.nextPageToken };
          })
        ).flat();
        assert.deepEqual([...first.reports, ...rest].map((r) => r.id), [...made, lateReport.reportId], "no repeat, no gap, the late report last");
      });

      it("returns one report by id; an unknown id is NOT_FOUND and a malformed one INVALID_ARGUMENT", async () => {
        const [target, reporter] = await newUsers(server, 2, "qget");
        const op = newOperator(server, protocol);
        const res = await server.clientsFor(reporter!, protocol).reports.createReport({ target: { target: userTarget(target!) }, reason: ReportReason.ILLEGAL, note: "selling things" });
        const got = await getReport(op, res.reportId);
        assert.equal(got.id, res.reportId);
        assert.equal(got.reason, ReportReason.ILLEGAL);
        assert.equal(msOf(got.createdAt, "created_at"), msOf(res.createdAt, "created_at"));
        await expectCode(op.clients.admin.getReport({ reportId: absentIdLike(res.reportId) }), Code.NotFound);
        await expectInvalidArgument(op.clients.admin.getReport({ reportId: "" }), "report_id");
        await expectInvalidArgument(op.clients.admin.getReport({ reportId: "not a report id!" }), "report_id");
      });
    });
  }

  it("rejects a negative or huge page_size and a page_token it did not issue with INVALID_ARGUMENT", async () => {
    const op = newOperator(server, "connect");
    await expectInvalidArgument(op.clients.admin.listReports({ pageSize: -1 }), "page_size");
    // Beyond the server's page limit is refused, as for every other list in Parley.
    await expectInvalidArgument(op.clients.admin.listReports({ pageSize: 100_000 }), "page_size");
    await expectInvalidArgument(op.clients.admin.listReports({ pageToken: "not-a-token" }), "page_token");
    // Filters outside their enums are mistakes, not "any".
    await expectInvalidArgument(op.clients.admin.listReports({ status: 99 as ReportStatus }), "status");
    await expectInvalidArgument(op.clients.admin.listReports({ reason: 99 as ReportReason }), "reason");
    await expectInvalidArgument(op.clients.admin.listReports({ targetKind: 99 as ReportTargetKind }), "target_kind");
  });
});

/** created_at never goes backwards along the list. */
function assertOldestFirst(reports: Report[]): void {
  const times = reports.map((r) => msOf(r.createdAt, `report ${r.id} created_at`));
  for (let i = 1; i < times.length; i++) {
    assert.ok(times[i - 1]! <= times[i]!, `oldest first: report ${i} (${new Date(times[i]!).toISOString()}) comes after an older-or-equal one (${new Date(times[i - 1]!).toISOString()})`);
  }
}
