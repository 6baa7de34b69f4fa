/** Every SQL statement about users. */
import type { Kysely, Selectable } from "kysely";
import type { Database, UsersTable } from "../db/schema.ts";

export type UserRow = Selectable<UsersTable>;

/** Creates the user if missing; a no-op when they exist. */
export async function insertUserIfMissing(db: Kysely<Database>, userId: string): Promise<void> {
  await db
    .insertInto("users")
    .values({ id: userId })
    .onConflict((oc) => oc.column("id").doNothing())
    .execute();
}

export async function findUser(db: Kysely<Database>, userId: string): Promise<UserRow | undefined> {
  return db.selectFrom("users").selectAll().where("id", "=", userId).executeTakeFirst();
}

export async function findUsers(db: Kysely<Database>, userIds: readonly string[]): Promise<UserRow[]> {
  if (userIds.length === 0) return [];
  return db.selectFrom("users").selectAll().where("id", "in", userIds).execute();
}

export interface ProfileChange {
  displayName?: string;
  avatarMediaId?: string;
}

export async function updateUser(db: Kysely<Database>, userId: string, change: ProfileChange): Promise<UserRow | undefined> {
  return db
    .updateTable("users")
    .set({
      ...(change.displayName !== undefined && { display_name: change.displayName }),
      ...(change.avatarMediaId !== undefined && { avatar_media_id: change.avatarMediaId }),
      updated_at: new Date(),
    })
    .where("id", "=", userId)
    .returningAll()
    .executeTakeFirst();
}

/** Deletes the user's row (the last step of account erasure); a later call creates a new one. */
export async function deleteUser(db: Kysely<Database>, userId: string): Promise<void> {
  await db.deleteFrom("users").where("id", "=", userId).execute();
}
