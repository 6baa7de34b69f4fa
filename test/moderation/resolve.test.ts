/**
 * Issue 16, item 1: resolving a report. DISMISS closes it; DELETE_CONTENT deletes the message
 * (a tombstone, message_deleted with moderated=true) or the story; WARN puts a warning on the
 * reported user's feed; SUSPEND and BAN restrict them (the flows are in suspension.test.ts and
 * ban.test.ts). Bad input and resolving twice get the right code and change nothing. Nothing the
 * reported user sees names the reporter.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ModerationAction, ReportReason, ReportStatus, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type Protocol } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { absentIdLike, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { assertNoneArrived, describeFrame, eventually, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { postStory } from "../stories/support.ts";
import { findInDatabase } from "../lifecycle/support/database-scan.ts";
import {
  accountModerated,
  allRestrictions,
  assertRestriction,
  auditEntries,
  errorMentions,
  expectRestricted,
  frameMentions,
  getReport,
  jsonOf,
  marker,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  report,
  secondsFromNow,
  storyTarget,
  userTarget,
  type ModerationServer,
  type Operator,
} from "./support.ts";

describe("AdminService.ResolveReport", () => {
  let server: ModerationServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await moderationServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(clients: Clients, label: string, cursor?: string): Promise<Feed> {
    const feed = await openLiveFeed(clients, { label, cursor });
    feeds.push(feed);
    return feed;
  }

  /** A group of author, reporter and witness with one message by the author, reported by the reporter. */
  async function reportedMessage(protocol: Protocol, prefix: string, reporterNote = "spam") {
    const [author, reporter, witness] = await newUsers(server, 3, prefix);
    const A = server.clientsFor(author!, protocol);
    const R = server.clientsFor(reporter!, protocol);
    const W = server.clientsFor(witness!, protocol);
    const conv = await createGroup(A, [reporter!, witness!]);
    // A word no other message has, so a search can find exactly this one.
    const word = `w${randomBytes(6).toString("hex")}`;
    const m = await sendText(A, conv.id, `reported ${word}`);
    const reportId = await report(R, messageTarget(conv.id, m.seq), ReportReason.SPAM, reporterNote);
    return { author: author!, reporter: reporter!, witness: witness!, A, R, W, conv, m, word, reportId };
  }

  function assertResolved(r: Awaited<ReturnType<typeof getReport>>, op: Operator, action: ModerationAction, what: string): void {
    assert.equal(r.status, ReportStatus.RESOLVED, `${what}: status`);
    assert.equal(r.resolution, action, `${what}: resolution`);
    assert.equal(r.resolvedBy, op.id, `${what}: resolved_by`);
    const at = msOf(r.resolvedAt, `${what}: resolved_at`);
    assert.ok(Math.abs(at - Date.now()) < 60_000, `${what}: resolved_at is about now`);
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("DISMISS closes the report and leaves the content and the user alone", async () => {
        const w = await reportedMessage(protocol, "dismiss");
        const op = newOperator(server, protocol);
        const res = await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.DISMISS, note: "fine" });
        assertResolved(res.report!, op, ModerationAction.DISMISS, "the response");
        assert.equal(res.restriction, undefined, "no restriction for a dismissal");
        assertResolved(await getReport(op, w.reportId), op, ModerationAction.DISMISS, "GetReport");
        const history = await listAllForward(w.W, w.conv.id);
        assert.equal(history[0]?.content.case, "text", "the message is still there");
        assert.equal(history[0]?.deletion, undefined);
        await sendText(w.A, w.conv.id, "still allowed to write");
      });

      it("DELETE_CONTENT on a message leaves a tombstone and sends message_deleted with moderated=true to the members", async function () {
        this.timeout(40_000);
        const w = await reportedMessage(protocol, "delmsg");
        await eventually(
          async () => (await w.W.search.searchMessages({ query: w.word })).hits.some((h) => h.message?.id === w.m.id),
          "the reported message found by search (indexed)",
          15_000,
        );
        const op = newOperator(server, protocol);
        const fw = await live(w.W, `witness/${protocol}`);
        const fa = await live(w.A, `author/${protocol}`);
        const res = await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.DELETE_CONTENT, note: "ads" });
        assertResolved(res.report!, op, ModerationAction.DELETE_CONTENT, "the response");
        assert.equal(res.restriction, undefined);

        for (const feed of [fw, fa]) {
          const { event } = await feed.waitForEvent(
            (e) => e.conversationId === w.conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === w.m.seq,
            "message_deleted of the reported message",
          );
          const payload = event.kind.case === "messageDeleted" ? event.kind.value : undefined;
          assert.equal(payload?.moderated, true, `${feed.label}: moderated=true`);
          assert.equal(payload?.messageId, w.m.id);
          assert.notEqual(payload?.deletion?.deletedBy, w.reporter, `${feed.label}: the deletion does not name the reporter`);
          assert.notEqual(event.actorId, w.reporter, `${feed.label}: the event's actor is not the reporter`);
        }
        for (const [who, clients] of [["witness", w.W], ["author", w.A]] as const) {
          const got = (await clients.messages.getMessage({ conversationId: w.conv.id, seq: w.m.seq })).message!;
          assert.equal(got.content.case, undefined, `${who}: the message has no content any more`);
          assert.ok(got.deletion?.deletedAt, `${who}: it is a tombstone`);
          assert.notEqual(got.deletion?.deletedBy, w.reporter, `${who}: the tombstone does not name the reporter`);
        }
        const history = await listAllForward(w.W, w.conv.id);
        assert.deepEqual(history.map((m) => m.seq), [w.m.seq], "the seq stays in the sequence");
        // Search forgets it too.
        await eventually(
          async () => !(await w.W.search.searchMessages({ query: w.word })).hits.some((h) => h.message?.id === w.m.id),
          "the deleted message gone from search",
          15_000,
        );
        // The author is not restricted by a content deletion.
        await sendText(w.A, w.conv.id, "sorry");
      });

      it("DELETE_CONTENT on a message its author already deleted resolves the report and leaves the tombstone as it was", async () => {
        const w = await reportedMessage(protocol, "deltwice");
        const own = (await w.A.messages.deleteMessage({ conversationId: w.conv.id, seq: w.m.seq })).message!;
        const fw = await live(w.W, `witness/${protocol}`);
        const op = newOperator(server, protocol);
        const res = await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.DELETE_CONTENT });
        assertResolved(res.report!, op, ModerationAction.DELETE_CONTENT, "the response");
        const got = (await w.W.messages.getMessage({ conversationId: w.conv.id, seq: w.m.seq })).message!;
        assert.equal(got.deletion?.deletedBy, w.author, "still deleted by its author");
        assert.equal(msOf(got.deletion?.deletedAt, "deleted_at"), msOf(own.deletion?.deletedAt, "deleted_at"), "at the same time");
        const fence = await sendText(w.W, w.conv.id, "fence");
        await fw.waitForEvent(isMessage(w.conv.id, fence.seq), "the fence message");
        assertNoneArrived(fw, (f) => f.case === "event" && f.value.kind.case === "messageDeleted", "no second message_deleted");
      });

      it("DELETE_CONTENT on a story takes it away from its viewers", async () => {
        const [author, reporter, viewer] = await newUsers(server, 3, "delstory");
        const A = server.clientsFor(author!, protocol);
        const V = server.clientsFor(viewer!, protocol);
        await V.social.follow({ userId: author! });
        const story = await postStory(A, StoryPrivacy.PUBLIC, { caption: "offensive" });
        const keep = await postStory(A, StoryPrivacy.PUBLIC, { caption: "harmless" });
        assert.equal((await V.stories.getStory({ storyId: story.id })).story?.id, story.id, "visible before");
        const fv = await live(V, `viewer/${protocol}`);
        const fa = await live(A, `author/${protocol}`);
        const reportId = await report(server.clientsFor(reporter!, protocol), storyTarget(story.id), ReportReason.HATE);
        const op = newOperator(server, protocol);
        const res = await op.clients.admin.resolveReport({ reportId, action: ModerationAction.DELETE_CONTENT });
        assertResolved(res.report!, op, ModerationAction.DELETE_CONTENT, "the response");
        // Clients holding the story are told to drop it, as when its author deletes it.
        for (const feed of [fv, fa]) {
          const { event } = await feed.waitForEvent((e) => e.kind.case === "storyExpired" && e.kind.value.storyId === story.id, "story_expired of the deleted story");
          assert.equal(event.kind.case === "storyExpired" && event.kind.value.deleted, true, `${feed.label}: deleted=true (gone before its deadline)`);
        }
        await expectCode(V.stories.getStory({ storyId: story.id }), Code.NotFound);
        await expectCode(server.clientsFor(reporter!, protocol).stories.getStory({ storyId: story.id }), Code.NotFound);
        const listed = (await V.stories.listUserStories({ userId: author! })).stories.map((s) => s.id);
        assert.deepEqual(listed, [keep.id], "only the other story is left");
      });

      it("WARN puts account_moderated(WARN) with the operator's note on the reported user's feed, and nothing more", async () => {
        const reporterNote = marker("reporter-note");
        const w = await reportedMessage(protocol, "warn", reporterNote);
        const op = newOperator(server, protocol);
        const fa = await live(w.A, `author/${protocol}`);
        const note = "Please stop posting ads.";
        const res = await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.WARN, note });
        assertResolved(res.report!, op, ModerationAction.WARN, "the response");
        assert.equal(res.restriction, undefined, "a warning restricts nothing");
        const { event } = await fa.waitForEvent((e) => accountModerated(e) !== undefined, "account_moderated");
        const payload = accountModerated(event)!;
        assert.equal(payload.action, ModerationAction.WARN);
        assert.equal(payload.reason, note);
        assert.equal(payload.until, undefined);
        assert.notEqual(event.actorId, w.reporter, "the warning's actor is not the reporter");

        // The stream goes on and the user may still write.
        const fence = await sendText(w.W, w.conv.id, "fence");
        await fa.waitForEvent(isMessage(w.conv.id, fence.seq), "a message after the warning");
        assertNoneArrived(fa, (f) => f.case === "ending", "a warning does not end the stream");
        await sendText(w.A, w.conv.id, "still allowed to write");
        // The message was left alone.
        assert.equal((await w.W.messages.getMessage({ conversationId: w.conv.id, seq: w.m.seq })).message?.content.case, "text");
        assertNoneArrived(fa, (f) => frameMentions(f, w.reporter) || frameMentions(f, reporterNote), "nothing names the reporter or quotes their note");
      });

      it("WARN reaches a user who was offline when they resume from their cursor", async () => {
        const w = await reportedMessage(protocol, "warnoff");
        const first = await live(w.A, `author-before/${protocol}`);
        const cursor = first.lastCursor;
        assert.ok(cursor, "the first session left a cursor");
        first.close();
        const op = newOperator(server, protocol);
        await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.WARN, note: "read this when you are back" });
        const resumed = await live(w.A, `author-after/${protocol}`, cursor);
        const { event } = await resumed.waitForEvent((e) => accountModerated(e) !== undefined, "account_moderated replayed after the cursor");
        assert.equal(accountModerated(event)?.action, ModerationAction.WARN);
        assert.equal(accountModerated(event)?.reason, "read this when you are back");
        assert.ok(event.cursor, "a stored event, with a cursor");
      });

      it("SUSPEND and BAN answer with the restriction now in force", async () => {
        const op = newOperator(server, protocol);
        const s = await reportedMessage(protocol, "rsusp");
        const until = secondsFromNow(3600);
        const suspended = await op.clients.admin.resolveReport({ reportId: s.reportId, action: ModerationAction.SUSPEND, suspendUntil: until, note: "a day off" });
        assertResolved(suspended.report!, op, ModerationAction.SUSPEND, "SUSPEND");
        assertRestriction(suspended.restriction, { userId: s.author, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "a day off" }, "SUSPEND's restriction");

        const b = await reportedMessage(protocol, "rban");
        const banned = await op.clients.admin.resolveReport({ reportId: b.reportId, action: ModerationAction.BAN, note: "gone" });
        assertResolved(banned.report!, op, ModerationAction.BAN, "BAN");
        assertRestriction(banned.restriction, { userId: b.author, kind: RestrictionKind.BANNED, reason: "gone" }, "BAN's restriction");

        const inForce = (await allRestrictions(op)).filter((r) => r.userId === s.author || r.userId === b.author);
        assert.equal(inForce.length, 2, "both are in force");
        for (const userId of [s.author, b.author]) assert.equal((await op.clients.admin.liftRestriction({ userId })).lifted, true);
      });
    });
  }

  it("never lets the reported user learn who reported them", async () => {
    const reporterNote = marker("reporter-note");
    const protocol = "grpc" as const;
    const [author, reporter, witness] = await newUsers(server, 3, "anon");
    const A = server.clientsFor(author!, protocol);
    const R = server.clientsFor(reporter!, protocol);
    const conv = await createGroup(A, [reporter!, witness!]);
    const m1 = await sendText(A, conv.id, "one");
    const m2 = await sendText(A, conv.id, "two");
    const story = await postStory(A, StoryPrivacy.PUBLIC, { caption: "three" });
    const fa = await live(A, "author");
    const op = newOperator(server, protocol);

    const onMessage1 = await report(R, messageTarget(conv.id, m1.seq), ReportReason.HARASSMENT, reporterNote);
    const onMessage2 = await report(R, messageTarget(conv.id, m2.seq), ReportReason.HARASSMENT, reporterNote);
    const onStory = await report(R, storyTarget(story.id), ReportReason.HARASSMENT, reporterNote);
    const onUser = await report(R, userTarget(author!), ReportReason.HARASSMENT, reporterNote);
    await op.clients.admin.resolveReport({ reportId: onMessage1, action: ModerationAction.DELETE_CONTENT });
    await op.clients.admin.resolveReport({ reportId: onStory, action: ModerationAction.DELETE_CONTENT });
    await op.clients.admin.resolveReport({ reportId: onMessage2, action: ModerationAction.WARN, note: "be kind" });
    const until = secondsFromNow(3600);
    await op.clients.admin.resolveReport({ reportId: onUser, action: ModerationAction.SUSPEND, suspendUntil: until, note: "cool off" });

    await fa.ended("the suspension ends the stream");
    const leaks = fa.received.filter((r) => frameMentions(r.frame, reporter!) || frameMentions(r.frame, reporterNote)).map((r) => describeFrame(r.frame));
    assert.deepEqual(leaks, [], `no frame the reported user received names the reporter or quotes their note; received ${fa.summary()}`);

    const denied = await expectRestricted(sendText(A, conv.id, "let me explain"), { userId: author!, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "cool off" }, "SendMessage");
    assert.ok(!errorMentions(denied, reporter!) && !errorMentions(denied, reporterNote), "the restriction error names no reporter");
    // The reported user cannot look at the reports either.
    for (const reportId of [onMessage1, onUser]) {
      const err = await expectCode(server.clientsFor(author!, protocol).admin.getReport({ reportId }), Code.PermissionDenied);
      assert.ok(!errorMentions(err, reporter!), "GetReport's refusal names no reporter");
    }
    // What the author can still read: the tombstone, their notifications.
    const tomb = (await A.messages.getMessage({ conversationId: conv.id, seq: m1.seq })).message!;
    assert.notEqual(tomb.deletion?.deletedBy, reporter, "the tombstone does not name the reporter");
    const modlog = await A.messages.listModerationLog({ conversationId: conv.id });
    assert.ok(!jsonOf(modlog).includes(reporter!), "the group's moderation log (the author is its admin) does not name the reporter");
    const notifications = await A.notifications.listNotifications({ pageSize: 100 });
    assert.ok(!jsonOf(notifications).includes(reporter!) && !jsonOf(notifications).includes(reporterNote), "no notification names the reporter");
    await op.clients.admin.liftRestriction({ userId: author! });
  });

  describe("bad input changes nothing", () => {
    const protocol = "connect" as const;

    /** Asserts the report is still open, the operator has no audit entry and the user can still write. */
    async function assertUntouched(op: Operator, w: Awaited<ReturnType<typeof reportedMessage>>, note: string, what: string): Promise<void> {
      const r = await getReport(op, w.reportId);
      assert.equal(r.status, ReportStatus.OPEN, `${what}: the report is still open`);
      assert.equal(r.resolution, ModerationAction.UNSPECIFIED, `${what}: no resolution`);
      assert.deepEqual(await auditEntries(op, { operatorId: op.id }), [], `${what}: nothing in the audit log`);
      assert.ok(!(await allRestrictions(op)).some((x) => x.userId === w.author), `${what}: the author is not restricted`);
      const got = (await w.W.messages.getMessage({ conversationId: w.conv.id, seq: w.m.seq })).message!;
      assert.equal(got.content.case, "text", `${what}: the message is still there`);
      await sendText(w.A, w.conv.id, `${what}: still allowed`);
      const url = server.env.DATABASE_URL;
      if (url) assert.deepEqual(await findInDatabase(url, [note]), [], `${what}: the note was written nowhere`);
    }

    it("rejects UNSPECIFIED and LIFT, and SUSPEND without a future suspend_until, with INVALID_ARGUMENT", async () => {
      const w = await reportedMessage(protocol, "badact");
      const op = newOperator(server, protocol);
      const note = marker("bad-action");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: w.reportId, note }), "action");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.UNSPECIFIED, note }), "action");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.LIFT, note }), "action");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: w.reportId, action: 99 as ModerationAction, note }), "action");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.SUSPEND, note }), "suspend_until");
      await expectInvalidArgument(
        op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.SUSPEND, suspendUntil: timestampFromMs(Date.now() - 60_000), note }),
        "suspend_until",
      );
      await assertUntouched(op, w, note, "after the rejected actions");
    });

    it("rejects DELETE_CONTENT on a report about a user with INVALID_ARGUMENT", async () => {
      const w = await reportedMessage(protocol, "baddel");
      const op = newOperator(server, protocol);
      const userReport = await report(w.W, userTarget(w.author), ReportReason.SPAM);
      const note = marker("bad-delete");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: userReport, action: ModerationAction.DELETE_CONTENT, note }), "action");
      assert.equal((await getReport(op, userReport)).status, ReportStatus.OPEN, "the user report is still open");
      await assertUntouched(op, w, note, "after DELETE_CONTENT on a user");
    });

    it("answers NOT_FOUND for an unknown report id and INVALID_ARGUMENT for a malformed one", async () => {
      const w = await reportedMessage(protocol, "badid");
      const op = newOperator(server, protocol);
      const note = marker("bad-id");
      await expectCode(op.clients.admin.resolveReport({ reportId: absentIdLike(w.reportId), action: ModerationAction.BAN, note }), Code.NotFound);
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: "", action: ModerationAction.BAN, note }), "report_id");
      await expectInvalidArgument(op.clients.admin.resolveReport({ reportId: "no such thing!", action: ModerationAction.BAN, note }), "report_id");
      await assertUntouched(op, w, note, "after unknown and malformed ids");
    });

    it("answers FAILED_PRECONDITION when the report is already resolved, and does not act again", async () => {
      const w = await reportedMessage(protocol, "twice");
      const op = newOperator(server, protocol);
      await op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.DISMISS, note: "fine" });
      const second = newOperator(server, protocol);
      for (const action of [ModerationAction.DISMISS, ModerationAction.DELETE_CONTENT, ModerationAction.WARN, ModerationAction.BAN]) {
        await expectCode(second.clients.admin.resolveReport({ reportId: w.reportId, action, note: "again" }), Code.FailedPrecondition);
      }
      await expectCode(
        second.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.SUSPEND, suspendUntil: secondsFromNow(600), note: "again" }),
        Code.FailedPrecondition,
      );
      const r = await getReport(op, w.reportId);
      assert.equal(r.resolution, ModerationAction.DISMISS, "the first resolution stands");
      assert.equal(r.resolvedBy, op.id);
      assert.deepEqual(await auditEntries(second, { operatorId: second.id }), [], "the second operator did nothing");
      assert.ok(!(await allRestrictions(op)).some((x) => x.userId === w.author), "the author is not restricted");
      assert.equal((await w.W.messages.getMessage({ conversationId: w.conv.id, seq: w.m.seq })).message?.content.case, "text", "the message stays");
      await sendText(w.A, w.conv.id, "still allowed");
    });

    it("resolves a report once when two operators race", async () => {
      const w = await reportedMessage(protocol, "race");
      const ops = [newOperator(server, protocol), newOperator(server, protocol), newOperator(server, protocol)];
      const outcomes = await Promise.allSettled(ops.map((op) => op.clients.admin.resolveReport({ reportId: w.reportId, action: ModerationAction.WARN, note: `from ${op.id}` })));
      const won = outcomes.filter((o) => o.status === "fulfilled");
      assert.equal(won.length, 1, "exactly one resolution wins");
      for (const o of outcomes) if (o.status === "rejected") assert.equal(ConnectError.from(o.reason).code, Code.FailedPrecondition, "the others are FAILED_PRECONDITION");
      const entries = (await Promise.all(ops.map((op) => auditEntries(op, { operatorId: op.id })))).flat();
      assert.equal(entries.length, 1, "one audit entry");
    });
  });
});
