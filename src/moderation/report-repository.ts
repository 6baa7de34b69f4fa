/** Every SQL statement about users' reports. */
import type { Insertable, Kysely, Selectable, Transaction } from "kysely";
import type { Database, ReportsTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type ReportRow = Selectable<ReportsTable>;

/** reports.status */
export const ReportState = { OPEN: 1, RESOLVED: 2 } as const;
/** reports.target_kind (and audit_log.target_kind) */
export const TargetKind = { MESSAGE: 1, STORY: 2, USER: 3 } as const;

/**
 * Files a report, or updates the reporter's open report on the same target (new reason and
 * note), and returns it: a reporter has at most one open report per target.
 */
export async function upsertOpenReport(db: Db, row: Insertable<ReportsTable>): Promise<ReportRow> {
  return db
    .insertInto("reports")
    .values(row)
    .onConflict((oc) =>
      oc
        .columns(["reporter_id", "target_key"])
        .where("status", "=", ReportState.OPEN)
        .doUpdateSet((eb) => ({ reason: eb.ref("excluded.reason"), note: eb.ref("excluded.note") })),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findReport(db: Db, reportId: string): Promise<ReportRow | undefined> {
  return db.selectFrom("reports").selectAll().where("id", "=", reportId).executeTakeFirst();
}

/** The report, locked until the transaction ends (two operators never resolve it twice). */
export async function lockReport(tx: Transaction<Database>, reportId: string): Promise<ReportRow | undefined> {
  return tx.selectFrom("reports").selectAll().where("id", "=", reportId).forUpdate().executeTakeFirst();
}

export async function markResolved(tx: Transaction<Database>, reportId: string, operatorId: string, resolution: number, at: Date): Promise<ReportRow> {
  return tx
    .updateTable("reports")
    .set({ status: ReportState.RESOLVED, resolved_by: operatorId, resolution, resolved_at: at })
    .where("id", "=", reportId)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export interface ReportFilter {
  status: number | null;
  reason: number | null;
  reportedUserId: string | null;
  targetKind: number | null;
}

/** The queue, oldest first (ids are time-ordered), after `afterId`. */
export async function listReports(db: Db, filter: ReportFilter, afterId: string | null, limit: number): Promise<ReportRow[]> {
  let query = db.selectFrom("reports").selectAll();
  if (filter.status !== null) query = query.where("status", "=", filter.status);
  if (filter.reason !== null) query = query.where("reason", "=", filter.reason);
  if (filter.reportedUserId !== null) query = query.where("reported_user_id", "=", filter.reportedUserId);
  if (filter.targetKind !== null) query = query.where("target_kind", "=", filter.targetKind);
  if (afterId !== null) query = query.where("id", ">", afterId);
  return query.orderBy("id").limit(limit).execute();
}
