/**
 * ReportService: users report a message or story they can see, or a user. What the reporter
 * cannot see is NOT_FOUND, exactly as elsewhere, so reporting never reveals anything. The
 * report records who is reported and a snapshot of the content, for the operators only.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { ReportReason, type ReportTarget } from "../../gen/parley/v1/moderation_pb.ts";
import { CreateReportResponseSchema, type CreateReportRequest, type ReportService as ReportServiceDesc } from "../../gen/parley/v1/report_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { findRole } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import { findMessage } from "../messages/index.ts";
import type { StoryAccess } from "../stories/index.ts";
import { findUser } from "../users/user-repository.ts";
import { boundedText, requireSeq, requireUserId, requireUuid } from "../validation.ts";
import { TargetKind, upsertOpenReport } from "./report-repository.ts";

/** Longest note a reporter may add, in characters. */
export const MAX_REPORT_NOTE = 1000;

const REASONS = new Set<number>(Object.values(ReportReason));

/** A target the reporter may see, with who it is about and what it says now. */
interface ResolvedTarget {
  kind: number;
  key: string;
  reportedUserId: string;
  snapshot: string;
  conversationId: string | null;
  messageSeq: string | null;
  storyId: string | null;
  targetUserId: string | null;
}

export class ReportService implements ServiceImpl<typeof ReportServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #stories: StoryAccess;

  constructor(db: Kysely<Database>, stories: StoryAccess) {
    this.#db = db;
    this.#stories = stories;
  }

  async createReport(req: CreateReportRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (req.reason === ReportReason.UNSPECIFIED) throw new InvalidInputError("reason", "is required");
    if (!REASONS.has(req.reason)) throw new InvalidInputError("reason", "is not a known reason");
    const note = boundedText("note", req.note, MAX_REPORT_NOTE);
    const target = await this.#resolve(userId, req.target);
    if (target.reportedUserId === userId) throw new InvalidInputError("target", "is the caller's own: report someone else or their content");
    const report = await upsertOpenReport(this.#db, {
      id: newId(),
      reporter_id: userId,
      reported_user_id: target.reportedUserId,
      target_kind: target.kind,
      target_key: target.key,
      conversation_id: target.conversationId,
      message_seq: target.messageSeq,
      story_id: target.storyId,
      target_user_id: target.targetUserId,
      reason: req.reason,
      note,
      content_snapshot: target.snapshot,
      created_at: new Date(),
    });
    return create(CreateReportResponseSchema, { reportId: report.id, createdAt: timestampFromDate(report.created_at) });
  }

  async #resolve(reporterId: string, target: ReportTarget | undefined): Promise<ResolvedTarget> {
    const none = { conversationId: null, messageSeq: null, storyId: null, targetUserId: null };
    switch (target?.target.case) {
      case "message": {
        const conversationId = requireUuid("target.message.conversation_id", target.target.value.conversationId);
        const seq = requireSeq("target.message.seq", target.target.value.seq);
        if ((await findRole(this.#db, conversationId, reporterId)) === undefined) throw new NotFoundError("conversation");
        const message = await findMessage(this.#db, conversationId, seq);
        if (!message) throw new NotFoundError("message");
        return {
          ...none,
          kind: TargetKind.MESSAGE,
          key: `m:${conversationId}:${seq}`,
          reportedUserId: message.sender_id,
          snapshot: message.body_text ?? "",
          conversationId,
          messageSeq: seq.toString(),
        };
      }
      case "storyId": {
        const storyId = requireUuid("target.story_id", target.target.value);
        const { story } = await this.#stories.requireVisible(reporterId, storyId, new Date());
        return { ...none, kind: TargetKind.STORY, key: `s:${storyId}`, reportedUserId: story.author_id, snapshot: story.caption, storyId };
      }
      case "userId": {
        const userId = requireUserId("target.user_id", target.target.value);
        if (!(await findUser(this.#db, userId))) throw new NotFoundError("user");
        return { ...none, kind: TargetKind.USER, key: `u:${userId}`, reportedUserId: userId, snapshot: "", targetUserId: userId };
      }
      default:
        throw new InvalidInputError("target", "is required: a message, a story or a user");
    }
  }
}
