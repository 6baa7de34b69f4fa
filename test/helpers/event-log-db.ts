/**
 * Direct reads of the partitioned event log's tables (event_log, event_log_partitions, events)
 * over `pg`, for tests that assert what the contract says about positions. Read-only.
 * Needs a real PostgreSQL (the server's DATABASE_URL); the embedded database is not reachable.
 */
import { fromBinary } from "@bufbuild/protobuf";
import pg from "pg";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";

export interface EventLogRow {
  logId: string;
  partitions: number;
}

export interface PartitionRow {
  partition: number;
  position: bigint;
  relayedThrough: bigint;
}

export interface EventRow {
  partition: number;
  position: bigint;
  id: string;
  conversationId: string | null;
  targetUserId: string | null;
  /** The stored event (payload decoded). */
  event: Event;
}

/** Runs `work` on one connection to the database, closed afterwards. */
export async function withDatabase<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The event_log rows (the contract says exactly one). */
export async function readEventLog(url: string): Promise<EventLogRow[]> {
  return withDatabase(url, async (c) => {
    const { rows } = await c.query<{ log_id: string; partitions: number }>("select log_id, partitions from event_log");
    return rows.map((r) => ({ logId: r.log_id, partitions: Number(r.partitions) }));
  });
}

/** event_log_partitions, by partition. */
export async function readPartitionHeads(url: string): Promise<PartitionRow[]> {
  return withDatabase(url, async (c) => {
    const { rows } = await c.query<{ partition: number; position: string; relayed_through: string }>(
      "select p.partition, p.position::text as position, r.relayed_through::text as relayed_through from event_log_partitions p join event_relay_checkpoints r using (partition) order by p.partition",
    );
    return rows.map((r) => ({ partition: Number(r.partition), position: BigInt(r.position), relayedThrough: BigInt(r.relayed_through) }));
  });
}

/** Every stored event, by (partition, position). */
export async function readEvents(url: string): Promise<EventRow[]> {
  return withDatabase(url, async (c) => {
    const { rows } = await c.query<{
      partition: number;
      position: string;
      id: string;
      conversation_id: string | null;
      target_user_id: string | null;
      payload: Buffer;
    }>(
      // Ordered by the table's columns: the text aliases would sort "10" before "2".
      "select e.partition, e.position::text as position, e.id::text as id, e.conversation_id::text as conversation_id, e.target_user_id, e.payload " +
        "from events e order by e.partition, e.position",
    );
    return rows.map((r) => ({
      partition: Number(r.partition),
      position: BigInt(r.position),
      id: r.id,
      conversationId: r.conversation_id,
      targetUserId: r.target_user_id,
      event: fromBinary(EventSchema, r.payload),
    }));
  });
}

/** The position of each stored event, by event id. */
export function positionsById(rows: readonly EventRow[]): Map<string, { partition: number; position: bigint }> {
  return new Map(rows.map((r) => [r.id, { partition: r.partition, position: r.position }]));
}
