/**
 * AdminService, the operator console: the report queue, suspensions and bans, the audit log.
 * Every method first checks the operator role, before reading its input, so anyone else gets
 * the same PERMISSION_DENIED whatever they ask about. Each action commits together with its
 * audit entry and the event that tells the user (and every node) what was decided.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import {
  GetReportResponseSchema,
  ListAuditLogResponseSchema,
  ListReportsResponseSchema,
  ListRestrictionsResponseSchema,
  LiftRestrictionResponseSchema,
  ReportTargetKind,
  ResolveReportResponseSchema,
  RestrictUserResponseSchema,
  type AdminService as AdminServiceDesc,
  type GetReportRequest,
  type ListAuditLogRequest,
  type ListReportsRequest,
  type ListRestrictionsRequest,
  type LiftRestrictionRequest,
  type ResolveReportRequest,
  type RestrictUserRequest,
} from "../../gen/parley/v1/admin_service_pb.ts";
import { ModerationAction, ReportReason, ReportStatus } from "../../gen/parley/v1/moderation_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { newId } from "../ids.ts";
import { writeWithEvents, type EventPublisher, type NewEvent } from "../log/index.ts";
import { eraseMessageAsOperator } from "../messages/index.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { findDoomed, removeStoryRows, type DoomedStory, type StoryRemover } from "../stories/index.ts";
import { findUser } from "../users/user-repository.ts";
import { boundedText, pageSize, requireUserId, requireUuid } from "../validation.ts";
import { insertAuditEntry, listAuditEntries } from "./audit-repository.ts";
import { accountModerated, moderationDecision } from "./moderation-events.ts";
import { toAuditEntry, toReport, toRestriction } from "./moderation-mapper.ts";
import { findReport, listReports, lockReport, markResolved, ReportState, TargetKind, type ReportRow } from "./report-repository.ts";
import type { RestrictionCache } from "./restriction-cache.ts";
import { listRestrictionsInForce, putRestriction, removeRestriction, RestrictionKindCode, type RestrictionRow } from "./restriction-repository.ts";

/** Longest operator note or reason, in characters. */
const MAX_NOTE = 1000;
/** Longest suspension; longer is a ban. */
const MAX_SUSPENSION_MS = 100 * 365 * 24 * 3600 * 1000;
const DEFAULT_PAGE = 50;
const REASONS = new Set<number>(Object.values(ReportReason));
const STATUSES = new Set<number>(Object.values(ReportStatus));
const TARGET_KINDS = new Map<number, number>([
  [ReportTargetKind.MESSAGE, TargetKind.MESSAGE],
  [ReportTargetKind.STORY, TargetKind.STORY],
  [ReportTargetKind.USER, TargetKind.USER],
]);
/** What ResolveReport may do (LIFT is for LiftRestriction). */
const RESOLUTIONS = new Set<number>([ModerationAction.DISMISS, ModerationAction.DELETE_CONTENT, ModerationAction.WARN, ModerationAction.SUSPEND, ModerationAction.BAN]);

export interface AdminServiceOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  stories: StoryRemover;
  restrictions: RestrictionCache;
  limits: Limits;
}

export class AdminService implements ServiceImpl<typeof AdminServiceDesc> {
  readonly #options: AdminServiceOptions;

  constructor(options: AdminServiceOptions) {
    this.#options = options;
  }

  async listReports(req: ListReportsRequest, ctx: HandlerContext) {
    requireOperator(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, this.#options.limits.maxPageSize);
    if (req.status !== ReportStatus.UNSPECIFIED && !STATUSES.has(req.status)) throw new InvalidInputError("status", "is not a known status");
    if (req.reason !== ReportReason.UNSPECIFIED && !REASONS.has(req.reason)) throw new InvalidInputError("reason", "is not a known reason");
    const targetKind = req.targetKind === ReportTargetKind.UNSPECIFIED ? null : TARGET_KINDS.get(req.targetKind);
    if (targetKind === undefined) throw new InvalidInputError("target_kind", "is not a known kind");
    const after = req.pageToken === "" ? null : requireUuid("page_token", String(decodePageToken("reports", req.pageToken, ["id"]).id));
    const filter = {
      status: req.status === ReportStatus.UNSPECIFIED ? null : req.status,
      reason: req.reason === ReportReason.UNSPECIFIED ? null : req.reason,
      reportedUserId: req.reportedUserId === "" ? null : requireUserId("reported_user_id", req.reportedUserId),
      targetKind,
    };
    const rows = await listReports(this.#options.db, filter, after, limit + 1);
    const page = rows.slice(0, limit);
    return create(ListReportsResponseSchema, {
      reports: page.map(toReport),
      nextPageToken: rows.length > limit ? encodePageToken("reports", { id: page.at(-1)!.id }) : "",
    });
  }

  async getReport(req: GetReportRequest, ctx: HandlerContext) {
    requireOperator(ctx);
    const report = await findReport(this.#options.db, requireUuid("report_id", req.reportId));
    if (!report) throw new NotFoundError("report");
    return create(GetReportResponseSchema, { report: toReport(report) });
  }

  async resolveReport(req: ResolveReportRequest, ctx: HandlerContext) {
    const operatorId = requireOperator(ctx);
    const reportId = requireUuid("report_id", req.reportId);
    if (!RESOLUTIONS.has(req.action)) throw new InvalidInputError("action", "must be DISMISS, DELETE_CONTENT, WARN, SUSPEND or BAN");
    const until = req.action === ModerationAction.SUSPEND ? requireSuspensionEnd(req.suspendUntil) : null;
    const note = boundedText("note", req.note, MAX_NOTE);
    const report = await findReport(this.#options.db, reportId);
    if (!report) throw new NotFoundError("report");
    requireOpen(report);
    if ((req.action === ModerationAction.SUSPEND || req.action === ModerationAction.BAN) && report.reported_user_id === operatorId) {
      throw new InvalidInputError("action", "the report is about the caller: an operator cannot restrict their own account");
    }
    if (req.action === ModerationAction.DELETE_CONTENT && report.target_kind === TargetKind.USER) {
      throw new InvalidInputError("action", "DELETE_CONTENT needs a reported message or story; this report is about a user");
    }
    // A story's bytes go before its rows (see StoryRemover): a failure after this leaves the
    // report open, and resolving it again finishes the removal.
    const doomedStories = req.action === ModerationAction.DELETE_CONTENT && report.story_id !== null ? await findDoomed(this.#options.db, [report.story_id]) : [];
    await this.#options.stories.deleteBytes(doomedStories);

    const now = new Date();
    const decision = moderationDecision(req.action, until, note);
    const { resolved, restriction } = await this.#write(async (tx, recorded) => {
      const locked = await lockReport(tx, reportId);
      if (!locked) throw new NotFoundError("report");
      requireOpen(locked);
      const userId = report.reported_user_id;
      let restriction: RestrictionRow | null = null;
      switch (req.action) {
        case ModerationAction.DELETE_CONTENT:
          await this.#deleteContent(tx, recorded, report, doomedStories, operatorId);
          break;
        case ModerationAction.WARN:
          recorded.push(accountModerated(userId, decision));
          break;
        case ModerationAction.SUSPEND:
        case ModerationAction.BAN:
          restriction = await this.#restrict(tx, recorded, userId, req.action, until, note, operatorId, now);
          break;
      }
      const resolved = await markResolved(tx, reportId, operatorId, req.action, now);
      await this.#audit(tx, operatorId, req.action, now, { targetUserId: userId, report, until, note });
      return { resolved, restriction };
    });
    if (restriction) this.#options.restrictions.apply(report.reported_user_id, decision);
    return create(ResolveReportResponseSchema, { report: toReport(resolved), ...(restriction && { restriction: toRestriction(restriction) }) });
  }

  async restrictUser(req: RestrictUserRequest, ctx: HandlerContext) {
    const operatorId = requireOperator(ctx);
    const userId = requireUserId("user_id", req.userId);
    if (req.action !== ModerationAction.SUSPEND && req.action !== ModerationAction.BAN) throw new InvalidInputError("action", "must be SUSPEND or BAN");
    const until = req.action === ModerationAction.SUSPEND ? requireSuspensionEnd(req.suspendUntil) : null;
    const reason = boundedText("reason", req.reason, MAX_NOTE);
    if (userId === operatorId) throw new InvalidInputError("user_id", "is the caller: an operator cannot restrict their own account");
    if (!(await findUser(this.#options.db, userId))) throw new NotFoundError("user");
    const now = new Date();
    const restriction = await this.#write(async (tx, recorded) => {
      const row = await this.#restrict(tx, recorded, userId, req.action, until, reason, operatorId, now);
      await this.#audit(tx, operatorId, req.action, now, { targetUserId: userId, until, note: reason });
      return row;
    });
    this.#options.restrictions.apply(userId, moderationDecision(req.action, until, reason));
    return create(RestrictUserResponseSchema, { restriction: toRestriction(restriction) });
  }

  async liftRestriction(req: LiftRestrictionRequest, ctx: HandlerContext) {
    const operatorId = requireOperator(ctx);
    const userId = requireUserId("user_id", req.userId);
    const note = boundedText("note", req.note, MAX_NOTE);
    const now = new Date();
    const decision = moderationDecision(ModerationAction.LIFT, null, note);
    const lifted = await this.#write(async (tx, recorded) => {
      if (!(await removeRestriction(tx, userId, now))) return false;
      recorded.push(accountModerated(userId, decision));
      await this.#audit(tx, operatorId, ModerationAction.LIFT, now, { targetUserId: userId, until: null, note });
      return true;
    });
    if (lifted) this.#options.restrictions.apply(userId, decision);
    return create(LiftRestrictionResponseSchema, { lifted });
  }

  async listRestrictions(req: ListRestrictionsRequest, ctx: HandlerContext) {
    requireOperator(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, this.#options.limits.maxPageSize);
    const after = req.pageToken === "" ? null : String(decodePageToken("restrictions", req.pageToken, ["u"]).u);
    const rows = await listRestrictionsInForce(this.#options.db, new Date(), after, limit + 1);
    const page = rows.slice(0, limit);
    return create(ListRestrictionsResponseSchema, {
      restrictions: page.map(toRestriction),
      nextPageToken: rows.length > limit ? encodePageToken("restrictions", { u: page.at(-1)!.user_id }) : "",
    });
  }

  async listAuditLog(req: ListAuditLogRequest, ctx: HandlerContext) {
    requireOperator(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, this.#options.limits.maxPageSize);
    const before = req.pageToken === "" ? null : requireUuid("page_token", String(decodePageToken("audit", req.pageToken, ["id"]).id));
    const filter = {
      operatorId: req.operatorId === "" ? null : requireUserId("operator_id", req.operatorId),
      targetUserId: req.targetUserId === "" ? null : requireUserId("target_user_id", req.targetUserId),
    };
    const rows = await listAuditEntries(this.#options.db, filter, before, limit + 1);
    const page = rows.slice(0, limit);
    return create(ListAuditLogResponseSchema, {
      entries: page.map(toAuditEntry),
      nextPageToken: rows.length > limit ? encodePageToken("audit", { id: page.at(-1)!.id }) : "",
    });
  }

  async #deleteContent(tx: Transaction<Database>, recorded: NewEvent[], report: ReportRow, stories: readonly DoomedStory[], operatorId: string): Promise<void> {
    if (report.target_kind === TargetKind.MESSAGE) {
      await eraseMessageAsOperator(tx, recorded, report.conversation_id!, BigInt(report.message_seq!), operatorId);
    } else {
      await removeStoryRows(tx, recorded, stories, operatorId);
    }
  }

  /** Puts a suspension or ban in force and tells the user; their streams end when it reaches them. */
  async #restrict(
    tx: Transaction<Database>,
    recorded: NewEvent[],
    userId: string,
    action: ModerationAction,
    until: Date | null,
    reason: string,
    operatorId: string,
    now: Date,
  ): Promise<RestrictionRow> {
    const kind = action === ModerationAction.BAN ? RestrictionKindCode.BANNED : RestrictionKindCode.SUSPENDED;
    const row = await putRestriction(tx, { user_id: userId, kind, until, reason, created_at: now, created_by: operatorId });
    recorded.push(accountModerated(userId, moderationDecision(action, until, reason)));
    return row;
  }

  async #audit(
    tx: Transaction<Database>,
    operatorId: string,
    action: ModerationAction,
    at: Date,
    about: { targetUserId: string; report?: ReportRow; until: Date | null; note: string },
  ): Promise<void> {
    const { report } = about;
    await insertAuditEntry(tx, {
      id: newId(at.getTime()),
      operator_id: operatorId,
      action,
      target_user_id: about.targetUserId,
      report_id: report?.id ?? null,
      target_kind: report?.target_kind ?? TargetKind.USER,
      conversation_id: report?.conversation_id ?? null,
      message_seq: report?.message_seq ?? null,
      story_id: report?.story_id ?? null,
      until: about.until,
      note: about.note,
      created_at: at,
    });
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#options.db, this.#options.publisher, work);
  }
}

/** The caller's id, when their token grants the operator role. */
function requireOperator(ctx: HandlerContext): string {
  const caller = requireCaller(ctx);
  if (!caller.operator) throw new PermissionDeniedError("the operator role is required", "OPERATOR_REQUIRED");
  return caller.userId;
}

function requireOpen(report: ReportRow): void {
  if (report.status !== ReportState.OPEN) throw new FailedPreconditionError("the report is already resolved", "REPORT_RESOLVED");
}

/** A suspension's end: set, in the future, and not absurdly far (that is a ban). */
function requireSuspensionEnd(value: Timestamp | undefined): Date {
  if (!value) throw new InvalidInputError("suspend_until", "is required for SUSPEND");
  const until = timestampDate(value);
  const now = Date.now();
  if (Number.isNaN(until.getTime()) || until.getTime() <= now) throw new InvalidInputError("suspend_until", "must be in the future");
  if (until.getTime() > now + MAX_SUSPENSION_MS) throw new InvalidInputError("suspend_until", "is more than 100 years away: use BAN");
  return until;
}
