/**
 * The deployment's event log layout: its id and partition count, written by the first node that
 * starts and checked by every later one. The partition count cannot change under running nodes
 * (a conversation's events would move to another partition mid-stream); `npm run
 * event-partitions` changes it offline, starting a new log that every client resyncs to once.
 */
import { randomBytes } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { ConfigError } from "../config.ts";
import type { Database } from "../db/schema.ts";
import type { EventLogLayout } from "./event-log.ts";

/** Names the layout's initialisation among advisory locks, so two first nodes agree. */
const LAYOUT_LOCK_ID = 7_462_315_003;

/** Reads the layout, creating it on first start; throws when it has another partition count. */
export async function openEventLog(db: Kysely<Database>, partitions: number): Promise<EventLogLayout> {
  return db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(${LAYOUT_LOCK_ID})`.execute(tx);
    const existing = await tx.selectFrom("event_log").select(["log_id", "partitions"]).executeTakeFirst();
    if (!existing) return createLayout(tx, partitions);
    if (existing.partitions !== partitions) {
      throw new ConfigError(
        `EVENT_PARTITIONS is ${partitions} but this database's event log has ${existing.partitions} partitions. ` +
          `Set EVENT_PARTITIONS=${existing.partitions}, or stop every node and run \`npm run event-partitions -- ${partitions}\`.`,
      );
    }
    return { logId: existing.log_id, partitions };
  });
}

/**
 * Starts a new log with another partition count (every node stopped): the replay window is
 * emptied and the log gets a new id, so every client's next Subscribe answers resync_required.
 */
export async function repartitionEventLog(db: Kysely<Database>, partitions: number): Promise<EventLogLayout> {
  return db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(${LAYOUT_LOCK_ID})`.execute(tx);
    await tx.deleteFrom("events").execute();
    await tx.deleteFrom("event_log_partitions").execute();
    await tx.deleteFrom("event_relay_checkpoints").execute();
    await tx.deleteFrom("event_log").execute();
    return createLayout(tx, partitions);
  });
}

async function createLayout(tx: Kysely<Database>, partitions: number): Promise<EventLogLayout> {
  const logId = randomBytes(8).toString("hex");
  await tx.insertInto("event_log").values({ log_id: logId, partitions }).execute();
  const rows = Array.from({ length: partitions }, (_, partition) => ({ partition }));
  await tx.insertInto("event_log_partitions").values(rows).execute();
  await tx.insertInto("event_relay_checkpoints").values(rows).execute();
  return { logId, partitions };
}
