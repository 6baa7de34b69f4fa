/**
 * Every SQL statement about presence: the last-seen time kept on the user row, and whose
 * conversations a presence change goes to.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";

/**
 * Records that the users were seen at `at`. GREATEST keeps the latest time when several
 * nodes record the same user out of order.
 */
export async function recordLastSeen(db: Kysely<Database>, userIds: readonly string[], at: Date): Promise<void> {
  if (userIds.length === 0) return;
  await db
    .updateTable("users")
    .set({ last_seen_at: sql<Date>`greatest(last_seen_at, ${at})` })
    .where("id", "in", userIds)
    .execute();
}

/** Last-seen time of each user that has a row (null if never recorded); others are left out. */
export async function findLastSeen(db: Kysely<Database>, userIds: readonly string[]): Promise<Map<string, Date | null>> {
  if (userIds.length === 0) return new Map();
  const rows = await db.selectFrom("users").select(["id", "last_seen_at"]).where("id", "in", userIds).execute();
  return new Map(rows.map((row) => [row.id, row.last_seen_at]));
}

