/**
 * Issue 16, item 1: "Conversation admins keep their own delete/remove powers." A group admin
 * deletes a member's message (a moderated tombstone, on the group's moderation log) and removes
 * a member, next to the deployment's moderation; a suspended admin, like any suspended user,
 * cannot, and can again once the suspension is lifted.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ModerationAction, ReportReason, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { MAIN_PROTOCOLS, newUsers } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { openLiveFeed, type Feed } from "../helpers/feed.ts";
import { expectRestricted, messageTarget, moderationServer, msOf, newOperator, report, secondsFromNow, type ModerationServer } from "./support.ts";

describe("conversation admins next to moderation", () => {
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
      it("a group admin still deletes a member's message and removes a member, even while the message is reported", async () => {
        const [admin, member, witness] = await newUsers(server, 3, "gadmin");
        const Adm = server.clientsFor(admin!, protocol);
        const M = server.clientsFor(member!, protocol);
        const Wit = server.clientsFor(witness!, protocol);
        const conv = await createGroup(Adm, [member!, witness!]);
        const spam = await sendText(M, conv.id, "buy now");
        // Reported to the deployment's operators too; the group's admin does not wait for them.
        const reportId = await report(Wit, messageTarget(conv.id, spam.seq), ReportReason.SPAM);
        const fw = await openLiveFeed(Wit, { label: `witness/${protocol}` });
        feeds.push(fw);

        const tomb = (await Adm.messages.deleteMessage({ conversationId: conv.id, seq: spam.seq })).message!;
        assert.equal(tomb.deletion?.deletedBy, admin, "the admin deleted it");
        const { event } = await fw.waitForEvent(
          (e) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === spam.seq,
          "message_deleted",
        );
        assert.equal(event.kind.case === "messageDeleted" && event.kind.value.moderated, true, "moderated=true");
        const log = await Adm.messages.listModerationLog({ conversationId: conv.id });
        assert.deepEqual(log.entries.map((e) => [e.messageSeq, e.senderId, e.deletedBy]), [[spam.seq, member, admin]], "on the group's moderation log");

        await Adm.conversations.removeMember({ conversationId: conv.id, userId: member! });
        await fw.waitForEvent((e) => e.conversationId === conv.id && e.kind.case === "memberRemoved" && e.kind.value.userId === member, "member_removed");
        await expectCode(M.messages.listMessages({ conversationId: conv.id }), Code.NotFound);

        // The operator may still resolve the report; the message is already gone.
        const op = newOperator(server, protocol);
        const res = await op.clients.admin.resolveReport({ reportId, action: ModerationAction.DISMISS, note: "handled by the group" });
        assert.equal(res.report?.resolution, ModerationAction.DISMISS);
      });

      it("a suspended group admin cannot delete or remove until the suspension is lifted", async () => {
        const [admin, member, witness] = await newUsers(server, 3, "sadmin");
        const Adm = server.clientsFor(admin!, protocol);
        const M = server.clientsFor(member!, protocol);
        const conv = await createGroup(Adm, [member!, witness!]);
        const m = await sendText(M, conv.id, "an ordinary message");
        const op = newOperator(server, protocol);
        const until = secondsFromNow(1800);
        await op.clients.admin.restrictUser({ userId: admin!, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "admin abuse" });
        const expected = { userId: admin!, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "admin abuse" };
        await expectRestricted(Adm.messages.deleteMessage({ conversationId: conv.id, seq: m.seq }), expected, "DeleteMessage by the suspended admin");
        await expectRestricted(Adm.conversations.removeMember({ conversationId: conv.id, userId: member! }), expected, "RemoveMember by the suspended admin");
        const still = (await M.messages.getMessage({ conversationId: conv.id, seq: m.seq })).message!;
        assert.equal(still.content.case, "text", "the message is untouched");
        await M.messages.listMessages({ conversationId: conv.id }); // still a member

        await op.clients.admin.liftRestriction({ userId: admin! });
        await Adm.messages.deleteMessage({ conversationId: conv.id, seq: m.seq });
        await Adm.conversations.removeMember({ conversationId: conv.id, userId: member! });
        await expectCode(M.messages.listMessages({ conversationId: conv.id }), Code.NotFound);
      });
    });
  }
});
