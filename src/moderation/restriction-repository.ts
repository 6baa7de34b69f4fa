/** Every SQL statement about suspensions and bans. */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { AccountRestrictionsTable, Database } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type RestrictionRow = Selectable<AccountRestrictionsTable>;

/** account_restrictions.kind: the proto's RestrictionKind numbers. */
export const RestrictionKindCode = { SUSPENDED: 1, BANNED: 2 } as const;

/** Puts a restriction in force, replacing the user's earlier one. */
export async function putRestriction(tx: Db, row: RestrictionRow): Promise<RestrictionRow> {
  return tx
    .insertInto("account_restrictions")
    .values(row)
    .onConflict((oc) =>
      oc.column("user_id").doUpdateSet((eb) => ({
        kind: eb.ref("excluded.kind"),
        until: eb.ref("excluded.until"),
        reason: eb.ref("excluded.reason"),
        created_at: eb.ref("excluded.created_at"),
        created_by: eb.ref("excluded.created_by"),
      })),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Removes the user's restriction; true when one was in force at `now`. */
export async function removeRestriction(tx: Db, userId: string, now: Date): Promise<boolean> {
  const removed = await tx.deleteFrom("account_restrictions").where("user_id", "=", userId).returning(["until"]).executeTakeFirst();
  return removed !== undefined && (removed.until === null || removed.until > now);
}

/** Restrictions in force at `now`, by user id, after `afterUserId`. */
export async function listRestrictionsInForce(db: Db, now: Date, afterUserId: string | null, limit: number): Promise<RestrictionRow[]> {
  let query = db
    .selectFrom("account_restrictions")
    .selectAll()
    .where((eb) => eb.or([eb("until", "is", null), eb("until", ">", now)]));
  if (afterUserId !== null) query = query.where(sql<boolean>`user_id > ${afterUserId}`);
  return query.orderBy("user_id").limit(limit).execute();
}
