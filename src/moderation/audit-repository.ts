/** Every SQL statement about the operators' audit log. */
import type { Insertable, Kysely, Selectable, Transaction } from "kysely";
import type { AuditLogTable, Database } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type AuditRow = Selectable<AuditLogTable>;

export async function insertAuditEntry(tx: Db, row: Insertable<AuditLogTable>): Promise<void> {
  await tx.insertInto("audit_log").values(row).execute();
}

export interface AuditFilter {
  operatorId: string | null;
  targetUserId: string | null;
}

/** Newest first (ids are time-ordered), before `beforeId`. */
export async function listAuditEntries(db: Db, filter: AuditFilter, beforeId: string | null, limit: number): Promise<AuditRow[]> {
  let query = db.selectFrom("audit_log").selectAll();
  if (filter.operatorId !== null) query = query.where("operator_id", "=", filter.operatorId);
  if (filter.targetUserId !== null) query = query.where("target_user_id", "=", filter.targetUserId);
  if (beforeId !== null) query = query.where("id", "<", beforeId);
  return query.orderBy("id", "desc").limit(limit).execute();
}
