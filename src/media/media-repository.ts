/** Every SQL statement about media objects. */
import type { Insertable, Kysely, Selectable, Transaction } from "kysely";
import type { Database, MediaTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type MediaRow = Selectable<MediaTable>;

export async function insertMedia(db: Db, row: Insertable<MediaTable>): Promise<MediaRow> {
  return db.insertInto("media").values(row).returningAll().executeTakeFirstOrThrow();
}

export async function findMedia(db: Db, mediaId: string): Promise<MediaRow | undefined> {
  return db.selectFrom("media").selectAll().where("id", "=", mediaId).executeTakeFirst();
}

export async function deleteMedia(db: Db, mediaIds: readonly string[]): Promise<void> {
  if (mediaIds.length === 0) return;
  await db.deleteFrom("media").where("id", "in", mediaIds).execute();
}

/** Up to `limit` of the user's media ids (account erasure; index media_by_owner). */
export async function findMediaIdsOwnedBy(db: Db, ownerId: string, limit: number): Promise<string[]> {
  const rows = await db.selectFrom("media").select("id").where("owner_id", "=", ownerId).limit(limit).execute();
  return rows.map((row) => row.id);
}
