/**
 * Every SQL statement about account erasures (table account_erasures). Times come from the
 * database's clock, so leases compare times of one clock whichever node wrote them.
 */
import { sql, type Kysely, type Selectable } from "kysely";
import type { AccountErasuresTable, Database } from "../db/schema.ts";

export type ErasureRow = Selectable<AccountErasuresTable>;

/**
 * Records a new erasure run by `runner`: the first for this id, or a later one after an
 * earlier erasure finished (the id signed in again as a new account). False when one is under
 * way already (running, or left unfinished by a run that stopped).
 */
export async function startErasure(db: Kysely<Database>, userId: string, runner: string): Promise<boolean> {
  const result = await sql`
    insert into account_erasures (user_id, requested_at, runner, heartbeat_at) values (${userId}, now(), ${runner}, now())
    on conflict (user_id) do update set requested_at = now(), runner = excluded.runner, heartbeat_at = now(),
      finished_at = null, messages_erased = 0
      where account_erasures.finished_at is not null
    returning user_id`.execute(db);
  return result.rows.length > 0;
}

/** Takes over an unfinished erasure nobody runs (released, or silent for longer than the lease). */
export async function claimErasure(db: Kysely<Database>, userId: string, runner: string, leaseMs: number): Promise<boolean> {
  const result = await sql`
    update account_erasures set runner = ${runner}, heartbeat_at = now()
    where user_id = ${userId} and finished_at is null
      and (runner is null or heartbeat_at < now() - ${leaseMs} * interval '1 millisecond')
    returning user_id`.execute(db);
  return result.rows.length > 0;
}

/** Up to `limit` unfinished erasures that nobody runs (the sweep's work), oldest first. */
export async function findAbandoned(db: Kysely<Database>, leaseMs: number, limit: number): Promise<string[]> {
  const result = await sql<{ user_id: string }>`
    select user_id from account_erasures
    where finished_at is null and (runner is null or heartbeat_at < now() - ${leaseMs} * interval '1 millisecond')
    order by requested_at limit ${limit}`.execute(db);
  return result.rows.map((row) => row.user_id);
}

/** Records progress of the run; false when another run has taken the erasure over. */
export async function recordProgress(db: Kysely<Database>, userId: string, runner: string, messagesErased: number): Promise<boolean> {
  const result = await db
    .updateTable("account_erasures")
    .set((eb) => ({ heartbeat_at: sql<Date>`now()`, messages_erased: eb("messages_erased", "+", String(messagesErased)) }))
    .where("user_id", "=", userId)
    .where("runner", "=", runner)
    .where("finished_at", "is", null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Lets another run take the erasure over at once (this run failed or its node is stopping). */
export async function releaseErasure(db: Kysely<Database>, userId: string, runner: string): Promise<void> {
  await db.updateTable("account_erasures").set({ runner: null }).where("user_id", "=", userId).where("runner", "=", runner).execute();
}

/** Marks the erasure finished; returns how many messages it turned into tombstones, or null when another run owns it. */
export async function finishErasure(db: Kysely<Database>, userId: string, runner: string): Promise<bigint | null> {
  const row = await db
    .updateTable("account_erasures")
    .set({ finished_at: sql<Date>`now()`, runner: null })
    .where("user_id", "=", userId)
    .where("runner", "=", runner)
    .where("finished_at", "is", null)
    .returning("messages_erased")
    .executeTakeFirst();
  return row ? BigInt(row.messages_erased) : null;
}

export async function findErasure(db: Kysely<Database>, userId: string): Promise<ErasureRow | undefined> {
  return db.selectFrom("account_erasures").selectAll().where("user_id", "=", userId).executeTakeFirst();
}

/** Erasures under way, and those finished in the last `lookbackMs` (index account_erasures_by_finish). */
export async function findErasuresInFlight(db: Kysely<Database>, lookbackMs: number): Promise<{ user_id: string; finished: boolean }[]> {
  const result = await sql<{ user_id: string; finished: boolean }>`
    select user_id, finished_at is not null as finished from account_erasures
    where finished_at is null or finished_at > now() - ${lookbackMs} * interval '1 millisecond'`.execute(db);
  return result.rows;
}

/**
 * A page of the users who may hold events about the user's content: their followers and
 * close friends (a story's audience) and the members of their conversations (to-device
 * messages), in id order after `after`.
 */
export async function findAudiencePage(db: Kysely<Database>, userId: string, after: string, limit: number): Promise<string[]> {
  const result = await sql<{ id: string }>`
    select id from (
      select follower_id as id from follows where followee_id = ${userId}
      union select friend_id from close_friends where owner_id = ${userId}
      union select other.user_id from conversation_members mine
        join conversation_members other on other.conversation_id = mine.conversation_id
        where mine.user_id = ${userId} and other.user_id <> ${userId}
    ) audience
    where id > ${after} order by id limit ${limit}`.execute(db);
  return result.rows.map((row) => row.id);
}
