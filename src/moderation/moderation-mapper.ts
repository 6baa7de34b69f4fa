/** Moderation rows ⇄ protobuf messages, in one place. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AccountRestrictionSchema,
  AuditEntrySchema,
  MessageRefSchema,
  ReportSchema,
  ReportTargetSchema,
  type AccountRestriction,
  type AuditEntry,
  type ModerationAction,
  type Report,
  type ReportReason,
  type ReportStatus,
  type ReportTarget,
  type RestrictionKind,
} from "../../gen/parley/v1/moderation_pb.ts";
import type { AuditRow } from "./audit-repository.ts";
import type { ReportRow } from "./report-repository.ts";
import { TargetKind } from "./report-repository.ts";
import type { RestrictionRow } from "./restriction-repository.ts";

/** Where a target is stored: the columns shared by reports and the audit log. */
export interface TargetColumns {
  target_kind: number | null;
  conversation_id: string | null;
  message_seq: string | null;
  story_id: string | null;
  target_user_id?: string | null;
}

export function toReportTarget(row: TargetColumns): ReportTarget | undefined {
  switch (row.target_kind) {
    case TargetKind.MESSAGE:
      return create(ReportTargetSchema, {
        target: { case: "message", value: create(MessageRefSchema, { conversationId: row.conversation_id!, seq: BigInt(row.message_seq!) }) },
      });
    case TargetKind.STORY:
      return create(ReportTargetSchema, { target: { case: "storyId", value: row.story_id! } });
    case TargetKind.USER:
      return create(ReportTargetSchema, { target: { case: "userId", value: row.target_user_id! } });
    default:
      return undefined;
  }
}

export function toReport(row: ReportRow): Report {
  return create(ReportSchema, {
    id: row.id,
    reporterId: row.reporter_id,
    target: toReportTarget(row),
    reportedUserId: row.reported_user_id,
    reason: row.reason as ReportReason,
    note: row.note,
    contentSnapshot: row.content_snapshot,
    status: row.status as ReportStatus,
    createdAt: timestampFromDate(row.created_at),
    ...(row.resolved_at && { resolvedAt: timestampFromDate(row.resolved_at) }),
    resolvedBy: row.resolved_by ?? "",
    resolution: (row.resolution ?? 0) as ModerationAction,
  });
}

export function toRestriction(row: RestrictionRow): AccountRestriction {
  return create(AccountRestrictionSchema, {
    userId: row.user_id,
    kind: row.kind as RestrictionKind,
    ...(row.until && { until: timestampFromDate(row.until) }),
    reason: row.reason,
    createdAt: timestampFromDate(row.created_at),
  });
}

export function toAuditEntry(row: AuditRow): AuditEntry {
  return create(AuditEntrySchema, {
    id: row.id,
    operatorId: row.operator_id,
    action: row.action as ModerationAction,
    targetUserId: row.target_user_id ?? "",
    reportId: row.report_id ?? "",
    // The audit log's user column is the acted-on user; a USER target names the same one.
    target: toReportTarget({ ...row, target_user_id: row.target_user_id }),
    ...(row.until && { until: timestampFromDate(row.until) }),
    note: row.note,
    createdAt: timestampFromDate(row.created_at),
  });
}
