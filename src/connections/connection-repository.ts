/**
 * Every SQL statement of the connection registry. Liveness is always judged by the database's
 * clock (`now()`), never a node's, so nodes with skewed clocks agree on who is alive.
 */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { ConnectionsTable, Database } from "../db/schema.ts";
import { microsOf, olderThan } from "../db/keyset.ts";

export type ConnectionRow = Selectable<ConnectionsTable>;
/** A listed connection: its row, its node's last heartbeat, and its keyset position. */
export type LiveConnectionRow = ConnectionRow & { heartbeat_at: Date; micros: string };
export interface NodeCountRow {
  node_id: string;
  heartbeat_at: Date;
  connections: string;
}
export interface ConnectionFilter {
  userId: string | null;
  nodeId: string | null;
}

type Db = Kysely<Database> | Transaction<Database>;

/** Rows per statement: 8 parameters a row stays far below PostgreSQL's 65,535. */
export const ROWS_PER_STATEMENT = 1000;

/** Registers the node, or confirms it is alive. True when its row was missing (new, or swept). */
export async function heartbeatNode(db: Db, nodeId: string): Promise<boolean> {
  const updated = await db.updateTable("connection_nodes").set({ heartbeat_at: sql`now()` }).where("node_id", "=", nodeId).executeTakeFirst();
  if (updated.numUpdatedRows > 0n) return false;
  await db
    .insertInto("connection_nodes")
    .values({ node_id: nodeId, started_at: sql`now()`, heartbeat_at: sql`now()` })
    .onConflict((oc) => oc.column("node_id").doUpdateSet({ heartbeat_at: sql`now()` }))
    .execute();
  return true;
}

/** Inserts streams (a retried batch may repeat rows: those are skipped). */
export async function insertConnections(db: Db, rows: ConnectionRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
    await db
      .insertInto("connections")
      .values(rows.slice(i, i + ROWS_PER_STATEMENT))
      .onConflict((oc) => oc.column("session_id").doNothing())
      .execute();
  }
}

export async function deleteConnections(db: Db, sessionIds: string[]): Promise<void> {
  for (let i = 0; i < sessionIds.length; i += ROWS_PER_STATEMENT) {
    await db.deleteFrom("connections").where("session_id", "in", sessionIds.slice(i, i + ROWS_PER_STATEMENT)).execute();
  }
}

/** Forgets a node and its streams (its graceful stop, or its own restart under the same id). */
export async function deleteNode(db: Kysely<Database>, nodeId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom("connections").where("node_id", "=", nodeId).execute();
    await tx.deleteFrom("connection_nodes").where("node_id", "=", nodeId).execute();
  });
}

/** Deletes the nodes silent for longer than the TTL, with their streams (one statement, two when some died). Returns how many nodes. */
export async function sweepDeadNodes(db: Kysely<Database>, ttlMs: number): Promise<number> {
  return db.transaction().execute(async (tx) => {
    const dead = await tx.deleteFrom("connection_nodes").where("heartbeat_at", "<", deadline(ttlMs)).returning("node_id").execute();
    if (dead.length === 0) return 0;
    await tx.deleteFrom("connections").where("node_id", "in", dead.map((d) => d.node_id)).execute();
    return dead.length;
  });
}

/** Live connections, newest first, from `after` on. */
export async function listLiveConnections(db: Db, ttlMs: number, filter: ConnectionFilter, after: { micros: string; id: string } | null, limit: number): Promise<LiveConnectionRow[]> {
  let query = db
    .selectFrom("connections as c")
    .innerJoin("connection_nodes as n", "n.node_id", "c.node_id")
    .selectAll("c")
    .select(["n.heartbeat_at", microsOf("c.connected_at").as("micros")])
    .where("n.heartbeat_at", ">=", deadline(ttlMs))
    .where(olderThan("c.connected_at", "c.session_id", after));
  if (filter.userId !== null) query = query.where("c.user_id", "=", filter.userId);
  if (filter.nodeId !== null) query = query.where("c.node_id", "=", filter.nodeId);
  return query.orderBy("c.connected_at", "desc").orderBy("c.session_id", "desc").limit(limit).execute();
}

/** Every live node with its count of streams (of one user, when given). */
export async function countPerLiveNode(db: Db, ttlMs: number, userId: string | null): Promise<NodeCountRow[]> {
  return db
    .selectFrom("connection_nodes as n")
    .leftJoin("connections as c", (join) => {
      const onNode = join.onRef("c.node_id", "=", "n.node_id");
      return userId === null ? onNode : onNode.on("c.user_id", "=", userId);
    })
    .select(["n.node_id", "n.heartbeat_at", sql<string>`count(c.session_id)::text`.as("connections")])
    .where("n.heartbeat_at", ">=", deadline(ttlMs))
    .groupBy(["n.node_id", "n.heartbeat_at"])
    .orderBy("n.node_id")
    .execute();
}

/** Deletes a live session (of `userId` only, unless null) and returns it; undefined when there is none. */
export async function deleteLiveSession(tx: Transaction<Database>, ttlMs: number, sessionId: string, userId: string | null): Promise<ConnectionRow | undefined> {
  let query = tx
    .deleteFrom("connections")
    .where("session_id", "=", sessionId)
    .where("node_id", "in", (eb) => eb.selectFrom("connection_nodes").select("node_id").where("heartbeat_at", ">=", deadline(ttlMs)));
  if (userId !== null) query = query.where("user_id", "=", userId);
  return query.returningAll().executeTakeFirst();
}

/** The oldest heartbeat that still counts as alive. */
function deadline(ttlMs: number) {
  return sql<Date>`now() - ${ttlMs}::int8 * interval '1 millisecond'`;
}
