/**
 * Every SQL statement about the social graph. Follows, close friends and blocks are the same
 * shape, a directed edge (subject → object) with the time it was made, so one set of
 * statements serves all three.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { microsOf, olderThan } from "../db/keyset.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** A kind of edge: its table and which column is the subject (the one who acts). */
export interface EdgeKind {
  readonly table: "follows" | "close_friends" | "blocks";
  readonly subject: string;
  readonly object: string;
}

export const FOLLOWS: EdgeKind = { table: "follows", subject: "follower_id", object: "followee_id" };
export const CLOSE_FRIENDS: EdgeKind = { table: "close_friends", subject: "owner_id", object: "friend_id" };
export const BLOCKS: EdgeKind = { table: "blocks", subject: "blocker_id", object: "blocked_id" };

/** Makes the edge; false when it was already there. */
export async function addEdge(db: Db, kind: EdgeKind, subject: string, object: string): Promise<boolean> {
  const result = await sql`
    insert into ${sql.table(kind.table)} (${sql.ref(kind.subject)}, ${sql.ref(kind.object)}) values (${subject}, ${object})
    on conflict do nothing`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/** Removes the edge; false when it was not there. */
export async function removeEdge(db: Db, kind: EdgeKind, subject: string, object: string): Promise<boolean> {
  const result = await sql`
    delete from ${sql.table(kind.table)} where ${sql.ref(kind.subject)} = ${subject} and ${sql.ref(kind.object)} = ${object}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

/** Removes the edge in both directions between two users. */
export async function removeEdgesBetween(db: Db, kind: EdgeKind, a: string, b: string): Promise<void> {
  await sql`
    delete from ${sql.table(kind.table)}
    where (${sql.ref(kind.subject)} = ${a} and ${sql.ref(kind.object)} = ${b})
       or (${sql.ref(kind.subject)} = ${b} and ${sql.ref(kind.object)} = ${a})`.execute(db);
}

/** A page position: the edge's time in microseconds and the other user's id. */
export interface EdgePosition {
  micros: string;
  id: string;
}

export interface EdgeRow {
  user_id: string;
  created_at: Date;
  micros: string;
}

/**
 * One page of a user's edges, newest first: "outgoing" lists the objects of the user's edges
 * (whom they follow), "incoming" the subjects of edges to them (who follows them).
 */
export async function listEdges(db: Db, kind: EdgeKind, direction: "outgoing" | "incoming", userId: string, after: EdgePosition | null, limit: number): Promise<EdgeRow[]> {
  const [self, other] = direction === "outgoing" ? [kind.subject, kind.object] : [kind.object, kind.subject];
  const result = await sql<EdgeRow>`
    select ${sql.ref(other)} as user_id, created_at, ${microsOf("created_at")} as micros
    from ${sql.table(kind.table)}
    where ${sql.ref(self)} = ${userId} and ${olderThan("created_at", other, after)}
    order by created_at desc, ${sql.ref(other)} desc
    limit ${limit}`.execute(db);
  return result.rows;
}

/**
 * Serializes changes to the edges between two users (in either direction) until commit, so a
 * follow checked against blocks cannot slip in beside a block being made.
 */
export async function lockPair(tx: Transaction<Database>, a: string, b: string): Promise<void> {
  const key = JSON.stringify(a < b ? [a, b] : [b, a]);
  await sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(tx);
}

/** True when either user blocked the other. */
export async function isBlockedEitherWay(db: Db, a: string, b: string): Promise<boolean> {
  const result = await sql`
    select 1 from blocks where (blocker_id = ${a} and blocked_id = ${b}) or (blocker_id = ${b} and blocked_id = ${a}) limit 1`.execute(db);
  return result.rows.length > 0;
}

export async function userExists(db: Db, userId: string): Promise<boolean> {
  return (await db.selectFrom("users").select("id").where("id", "=", userId).executeTakeFirst()) !== undefined;
}

/**
 * Removes up to `limit` edges of this kind that have the user on either side (account
 * erasure); returns how many. Both sides are indexed, so each call is two index ranges.
 */
export async function removeSomeEdgesOf(db: Db, kind: EdgeKind, userId: string, limit: number): Promise<number> {
  const [subject, object] = [sql.ref(kind.subject), sql.ref(kind.object)];
  const result = await sql`
    delete from ${sql.table(kind.table)} t using (
      (select ${subject} as s, ${object} as o from ${sql.table(kind.table)} where ${subject} = ${userId} limit ${limit})
      union all
      (select ${subject}, ${object} from ${sql.table(kind.table)} where ${object} = ${userId} limit ${limit})
    ) doomed
    where t.${subject} = doomed.s and t.${object} = doomed.o`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
