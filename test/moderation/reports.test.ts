/**
 * Issue 16, item 1: users report a message, a story or a user (reason, note). Operators see
 * who reported what and the reported content as it was; something the reporter cannot see is
 * NOT_FOUND; reporting oneself is INVALID_ARGUMENT; the same report twice is one report; bad
 * input writes nothing.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { ModerationAction, ReportReason, ReportStatus } from "../../gen/parley/v1/moderation_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MAIN_PROTOCOLS, newUsers, uniqueId, type Clients } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { absentIdLike, createGroup, sendText } from "../helpers/fixtures.ts";
import { postStory } from "../stories/support.ts";
import { findInDatabase } from "../lifecycle/support/database-scan.ts";
import {
  getReport,
  marker,
  messageTarget,
  moderationServer,
  msOf,
  newOperator,
  report,
  reportsAbout,
  storyTarget,
  userTarget,
  type ModerationServer,
} from "./support.ts";

/** The fields a self-report or a bad target may be named by. */
const TARGET_FIELDS = ["target", "message", "story_id", "user_id", "conversation_id", "seq"];

describe("ReportService.CreateReport", () => {
  let server: ModerationServer;
  before(async () => {
    server = await moderationServer();
  });

  /** Fails when the string was written anywhere in the server's database (PostgreSQL only). */
  async function assertNotStored(needle: string, what: string): Promise<void> {
    const url = server.env.DATABASE_URL;
    if (!url) return; // the embedded database cannot be read from outside
    assert.deepEqual(await findInDatabase(url, [needle]), [], `${what}: nothing was written (the note is in no table)`);
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("reports a member's message: operators see the reporter, the target, the author, reason, note and the text as it was", async () => {
        const [author, reporter, other] = await newUsers(server, 3, "rmsg");
        const A = server.clientsFor(author!, protocol);
        const R = server.clientsFor(reporter!, protocol);
        const conv = await createGroup(A, [reporter!, other!]);
        const text = `cheap watches ${marker("text")}`;
        const m = await sendText(A, conv.id, text);
        const note = `keeps posting ads ${marker("note")}`;

        const before = Date.now();
        const res = await R.reports.createReport({
          target: { target: messageTarget(conv.id, m.seq) },
          reason: ReportReason.SPAM,
          note,
        });
        assert.ok(res.reportId, "a report id");
        const createdAt = msOf(res.createdAt, "created_at");
        assert.ok(createdAt >= before - 5_000 && createdAt <= Date.now() + 5_000, "created_at is about now");

        const op = newOperator(server, protocol);
        const got = await getReport(op, res.reportId);
        assert.equal(got.id, res.reportId);
        assert.equal(got.reporterId, reporter, "operators see who reported");
        assert.equal(got.target?.target.case, "message", "the target is a message");
        assert.equal(got.target?.target.case === "message" ? got.target.target.value.conversationId : "", conv.id);
        assert.equal(got.target?.target.case === "message" ? got.target.target.value.seq : -1n, m.seq);
        assert.equal(got.reportedUserId, author, "the reported user is the message's author");
        assert.equal(got.reason, ReportReason.SPAM);
        assert.equal(got.note, note);
        assert.equal(got.contentSnapshot, text, "the message's text as it was");
        assert.equal(got.status, ReportStatus.OPEN);
        assert.equal(msOf(got.createdAt, "report created_at"), createdAt, "the same created_at as CreateReport returned");
        assert.equal(got.resolvedAt, undefined, "not resolved yet");
        assert.equal(got.resolvedBy, "");
        assert.equal(got.resolution, ModerationAction.UNSPECIFIED);

        // What the author does afterwards does not change what was reported.
        await A.messages.editMessage({ conversationId: conv.id, seq: m.seq, content: { case: "text", value: "nothing to see here" } });
        assert.equal((await getReport(op, res.reportId)).contentSnapshot, text, "the snapshot survives an edit");
        await A.messages.deleteMessage({ conversationId: conv.id, seq: m.seq });
        const afterDelete = await getReport(op, res.reportId);
        assert.equal(afterDelete.contentSnapshot, text, "the snapshot survives a delete");
        assert.equal(afterDelete.status, ReportStatus.OPEN, "the report stays open when the author deletes the message");
      });

      it("keeps an encrypted message's snapshot empty (the server cannot read it)", async () => {
        const [author, reporter, other] = await newUsers(server, 3, "renc");
        const A = server.clientsFor(author!, protocol);
        const conv = await createGroup(A, [reporter!, other!]);
        const sealed = await A.messages.sendMessage({
          conversationId: conv.id,
          clientMessageId: randomUUID(),
          content: {
            case: "envelope",
            value: { $typeName: "parley.v1.EncryptedEnvelope", ciphertext: randomBytes(40), nonce: randomBytes(24), algorithm: "x", keyId: "k", keyEpoch: 0 },
          },
        });
        const id = await report(server.clientsFor(reporter!, protocol), messageTarget(conv.id, sealed.message!.seq), ReportReason.HARASSMENT, "it said awful things");
        const got = await getReport(newOperator(server, protocol), id);
        assert.equal(got.contentSnapshot, "");
        assert.equal(got.reportedUserId, author);
      });

      it("reports a story the reporter can see with its caption; one they cannot see is NOT_FOUND", async () => {
        const [author, reporter] = await newUsers(server, 2, "rstory");
        const A = server.clientsFor(author!, protocol);
        const R = server.clientsFor(reporter!, protocol);
        const caption = `look at this ${marker("caption")}`;
        const pub = await postStory(A, StoryPrivacy.PUBLIC, { caption });
        const followers = await postStory(A, StoryPrivacy.FOLLOWERS, { caption: "followers only" });
        const close = await postStory(A, StoryPrivacy.CLOSE_FRIENDS, { caption: "close friends only" });
        const op = newOperator(server, protocol);

        const id = await report(R, storyTarget(pub.id), ReportReason.HATE, "hateful caption");
        const got = await getReport(op, id);
        assert.equal(got.target?.target.case, "storyId");
        assert.equal(got.target?.target.value, pub.id);
        assert.equal(got.reportedUserId, author, "the reported user is the story's author");
        assert.equal(got.contentSnapshot, caption, "the caption as it was");

        // A stranger sees neither the followers' nor the close friends' story.
        await expectCode(R.reports.createReport({ target: { target: storyTarget(followers.id) }, reason: ReportReason.HATE }), Code.NotFound);
        await expectCode(R.reports.createReport({ target: { target: storyTarget(close.id) }, reason: ReportReason.HATE }), Code.NotFound);
        await expectCode(R.reports.createReport({ target: { target: storyTarget(absentIdLike(pub.id)) }, reason: ReportReason.HATE }), Code.NotFound);
        // Once they follow, the followers' story is theirs to report.
        await R.social.follow({ userId: author! });
        await report(R, storyTarget(followers.id), ReportReason.HATE);
        await expectCode(R.reports.createReport({ target: { target: storyTarget(close.id) }, reason: ReportReason.HATE }), Code.NotFound);

        await A.stories.deleteStory({ storyId: pub.id });
        assert.equal((await getReport(op, id)).contentSnapshot, caption, "the snapshot survives the story's deletion");
      });

      it("reports a user, with an empty snapshot", async () => {
        const [target, reporter] = await newUsers(server, 2, "ruser");
        const id = await report(server.clientsFor(reporter!, protocol), userTarget(target!), ReportReason.OTHER, "impersonates me");
        const got = await getReport(newOperator(server, protocol), id);
        assert.equal(got.target?.target.case, "userId");
        assert.equal(got.target?.target.value, target);
        assert.equal(got.reportedUserId, target);
        assert.equal(got.reason, ReportReason.OTHER);
        assert.equal(got.note, "impersonates me");
        assert.equal(got.contentSnapshot, "");
        assert.equal(got.status, ReportStatus.OPEN);
      });

      it("makes one report of a reporter's repeated reports while it is open, and a new one once it is resolved", async () => {
        const [target, reporter, second] = await newUsers(server, 3, "rdup");
        const R = server.clientsFor(reporter!, protocol);
        const op = newOperator(server, protocol);
        const first = await report(R, userTarget(target!), ReportReason.SPAM, "first words");
        const again = await report(R, userTarget(target!), ReportReason.HARASSMENT, "second words");
        assert.equal(again, first, "the same report id while it is open");
        const open = await reportsAbout(op, target!);
        assert.deepEqual(open.map((r) => r.id), [first], "one report in the queue");
        // The contract: reporting again updates the open report.
        assert.equal(open[0]!.reason, ReportReason.HARASSMENT, "the open report has the newer reason");
        assert.equal(open[0]!.note, "second words", "the open report has the newer note");

        const other = await report(server.clientsFor(second!, protocol), userTarget(target!));
        assert.notEqual(other, first, "another reporter's report is a report of its own");

        await op.clients.admin.resolveReport({ reportId: first, action: ModerationAction.DISMISS });
        const fresh = await report(R, userTarget(target!), ReportReason.SPAM, "it started again");
        assert.notEqual(fresh, first, "after resolution a new report is made");
        assert.deepEqual((await reportsAbout(op, target!)).map((r) => r.id), [first, other, fresh], "three reports, oldest first");
      });
    });
  }

  describe("bad input", () => {
    const protocol = "connect" as const;
    interface World {
      author: string;
      reporter: string;
      A: Clients;
      R: Clients;
      convId: string;
      seq: bigint;
      storyId: string;
    }
    async function world(): Promise<World> {
      const [author, reporter, other] = await newUsers(server, 3, "rbad");
      const A = server.clientsFor(author!, protocol);
      const R = server.clientsFor(reporter!, protocol);
      const conv = await createGroup(A, [reporter!, other!]);
      const m = await sendText(A, conv.id, "hello");
      const story = await postStory(A, StoryPrivacy.PUBLIC, { caption: "public" });
      return { author: author!, reporter: reporter!, A, R, convId: conv.id, seq: m.seq, storyId: story.id };
    }

    it("rejects a missing or UNSPECIFIED reason, a note over 1,000 characters and a missing target with INVALID_ARGUMENT, writing nothing", async () => {
      const w = await world();
      const op = newOperator(server, protocol);
      const note = marker("rejected");
      await expectInvalidArgument(w.R.reports.createReport({ target: { target: userTarget(w.author) }, note }), "reason");
      await expectInvalidArgument(
        w.R.reports.createReport({ target: { target: userTarget(w.author) }, reason: ReportReason.UNSPECIFIED, note }),
        "reason",
      );
      await expectInvalidArgument(
        w.R.reports.createReport({ target: { target: userTarget(w.author) }, reason: ReportReason.SPAM, note: note + "x".repeat(1001 - note.length) }),
        "note",
      );
      await expectInvalidArgument(w.R.reports.createReport({ reason: ReportReason.SPAM, note }), "target", "user_id", "story_id", "message");
      await expectInvalidArgument(w.R.reports.createReport({ target: {}, reason: ReportReason.SPAM, note }), "target", "user_id", "story_id", "message");
      assert.deepEqual(await reportsAbout(op, w.author), [], "no report was made");
      await assertNotStored(note, "rejected reports");

      // 1,000 characters is allowed, counted as characters (each of these is two bytes in UTF-8).
      const longest = "é".repeat(1000);
      const id = await report(w.R, userTarget(w.author), ReportReason.OTHER, longest);
      assert.equal((await getReport(op, id)).note, longest);
    });

    it("rejects reporting oneself, one's own message and one's own story with INVALID_ARGUMENT, writing nothing", async () => {
      const w = await world();
      const op = newOperator(server, protocol);
      const note = marker("self");
      await expectInvalidArgument(w.A.reports.createReport({ target: { target: userTarget(w.author) }, reason: ReportReason.SPAM, note }), ...TARGET_FIELDS);
      await expectInvalidArgument(w.A.reports.createReport({ target: { target: messageTarget(w.convId, w.seq) }, reason: ReportReason.SPAM, note }), ...TARGET_FIELDS);
      await expectInvalidArgument(w.A.reports.createReport({ target: { target: storyTarget(w.storyId) }, reason: ReportReason.SPAM, note }), ...TARGET_FIELDS);
      assert.deepEqual(await reportsAbout(op, w.author), [], "no report was made");
      await assertNotStored(note, "self-reports");
    });

    it("answers NOT_FOUND for what the reporter cannot see or what does not exist, writing nothing", async () => {
      const w = await world();
      const op = newOperator(server, protocol);
      const [outsider] = await newUsers(server, 1, "routsider");
      const O = server.clientsFor(outsider!, protocol);
      const note = marker("notfound");
      const cases: { what: string; clients: Clients; target: Parameters<typeof report>[1] }[] = [
        { what: "a message of a conversation the reporter is not in", clients: O, target: messageTarget(w.convId, w.seq) },
        { what: "a seq past the conversation's last message", clients: w.R, target: messageTarget(w.convId, w.seq + 100n) },
        { what: "a conversation that does not exist", clients: w.R, target: messageTarget(absentIdLike(w.convId), 1n) },
        { what: "a story that does not exist", clients: w.R, target: storyTarget(absentIdLike(w.storyId)) },
        { what: "a user who never used Parley", clients: w.R, target: userTarget(uniqueId("ghost")) },
      ];
      for (const c of cases) {
        const err = await expectCode(c.clients.reports.createReport({ target: { target: c.target }, reason: ReportReason.SPAM, note }), Code.NotFound).catch((e: unknown) => {
          throw new Error(`${c.what}: ${String(e)}`);
        });
        assert.ok(!err.rawMessage.includes(w.author), `${c.what}: the error does not name the author`);
      }
      // The outsider gets the same answer for a real message as for a missing one.
      const real = await expectCode(O.reports.createReport({ target: { target: messageTarget(w.convId, w.seq) }, reason: ReportReason.SPAM }), Code.NotFound);
      const missing = await expectCode(O.reports.createReport({ target: { target: messageTarget(absentIdLike(w.convId), w.seq) }, reason: ReportReason.SPAM }), Code.NotFound);
      assert.equal(real.rawMessage, missing.rawMessage, "an existing conversation the outsider is not in looks like a missing one");
      assert.deepEqual(await reportsAbout(op, w.author), [], "no report was made");
      await assertNotStored(note, "NOT_FOUND reports");
    });
  });
});
