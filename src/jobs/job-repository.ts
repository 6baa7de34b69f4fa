/** Every SQL statement about jobs and their chunks. */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, JobsTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;
export type JobRow = Selectable<JobsTable>;

/** parley.v1.JobStatus numbers, as stored. */
export const Status = { QUEUED: 1, RUNNING: 2, SUCCEEDED: 3, FAILED: 4, CANCELLED: 5 } as const;
/** parley.v1.JobKind numbers, as stored. */
export const Kind = { CONVERSATION_EXPORT: 1, USER_DATA_EXPORT: 2, SEARCH_REINDEX: 3 } as const;
const ACTIVE = [Status.QUEUED, Status.RUNNING];
const CHUNK_PENDING = 1;
const CHUNK_DONE = 2;

export interface NewJob {
  id: string;
  kind: number;
  ownerId: string;
  conversationId: string | null;
  format: number;
  params: Record<string, unknown>;
  itemsTotal: number;
}

/** Serialises job creation per key (an owner's active-job limit, the one reindex). */
export async function lockKey(tx: Transaction<Database>, key: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${`jobs:${key}`}))`.execute(tx);
}

export async function countActiveOf(db: Db, ownerId: string): Promise<number> {
  const row = await db.selectFrom("jobs").select((eb) => eb.fn.countAll<string>().as("n")).where("owner_id", "=", ownerId).where("status", "in", ACTIVE).executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function findActiveOfKind(db: Db, kind: number): Promise<JobRow | undefined> {
  return db.selectFrom("jobs").selectAll().where("kind", "=", kind).where("status", "in", ACTIVE).orderBy("id").executeTakeFirst();
}

export async function insertJob(tx: Transaction<Database>, job: NewJob, chunks: readonly Record<string, unknown>[]): Promise<JobRow> {
  const row = await tx
    .insertInto("jobs")
    .values({
      id: job.id,
      kind: job.kind,
      owner_id: job.ownerId,
      conversation_id: job.conversationId,
      format: job.format,
      params: JSON.stringify(job.params),
      status: Status.QUEUED,
      items_total: job.itemsTotal,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  if (chunks.length > 0) {
    await tx
      .insertInto("job_chunks")
      .values(chunks.map((range, chunkNo) => ({ job_id: job.id, chunk_no: chunkNo, range: JSON.stringify(range) })))
      .execute();
  }
  return row;
}

export async function findJob(db: Db, id: string): Promise<JobRow | undefined> {
  return db.selectFrom("jobs").selectAll().where("id", "=", id).executeTakeFirst();
}

export async function lockJob(tx: Transaction<Database>, id: string): Promise<JobRow | undefined> {
  return tx.selectFrom("jobs").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
}

/** The owner's jobs, newest first, after the keyset position (an id). */
export async function listJobsOf(db: Db, ownerId: string, beforeId: string | null, limit: number): Promise<JobRow[]> {
  let query = db.selectFrom("jobs").selectAll().where("owner_id", "=", ownerId);
  if (beforeId !== null) query = query.where("id", "<", beforeId);
  return query.orderBy("id", "desc").limit(limit).execute();
}

/** Queued → running (first chunk taken); returns the row when it moved. */
export async function markRunning(tx: Transaction<Database>, id: string): Promise<JobRow | undefined> {
  return tx
    .updateTable("jobs")
    .set({ status: Status.RUNNING, started_at: sql`now()`, last_event_at: sql`now()`, updated_at: sql`now()` })
    .where("id", "=", id)
    .where("status", "=", Status.QUEUED)
    .returningAll()
    .executeTakeFirst();
}

/** Ends an active job (succeeded, failed or cancelled); returns the row when it was active. */
export async function endJob(
  tx: Transaction<Database>,
  id: string,
  status: number,
  extra: { error?: string; output?: { name: string; type: string; size: number; sha256: string }; expiresAt?: Date; finalTotal?: boolean } = {},
): Promise<JobRow | undefined> {
  return tx
    .updateTable("jobs")
    .set({
      status,
      finished_at: sql`now()`,
      updated_at: sql`now()`,
      last_event_at: sql`now()`,
      ...(extra.error !== undefined && { error: extra.error }),
      // A finished job's total is what it did (retention may have taken messages counted at the start).
      ...(extra.finalTotal && { items_total: sql`items_done` }),
      ...(extra.output && { output_name: extra.output.name, output_type: extra.output.type, output_size: extra.output.size, output_sha256: extra.output.sha256 }),
      ...(extra.expiresAt && { expires_at: extra.expiresAt }),
    })
    .where("id", "=", id)
    .where("status", "in", ACTIVE)
    .returningAll()
    .executeTakeFirst();
}

export interface ClaimedChunk {
  range: Record<string, unknown>;
  attempts: number;
}

/**
 * Takes a pending chunk of an active job for `runner` until the lease ends, unless another
 * runner's lease is still live. Null when it cannot be taken (see chunkState for why).
 */
export async function claimChunk(db: Db, jobId: string, chunkNo: number, runner: string, leaseMs: number): Promise<ClaimedChunk | null> {
  const row = await sql<ClaimedChunk>`
    update job_chunks c set runner = ${runner}, lease_until = now() + ${leaseMs} * interval '1 millisecond', attempts = c.attempts + 1
    from jobs j
    where j.id = c.job_id and c.job_id = ${jobId} and c.chunk_no = ${chunkNo} and c.status = ${CHUNK_PENDING}
      and j.status in (${Status.QUEUED}, ${Status.RUNNING})
      and (c.lease_until is null or c.lease_until < now() or c.runner = ${runner})
    returning c.range, c.attempts`.execute(db);
  return row.rows[0] ?? null;
}

/** Why a chunk could not be claimed: settled (nothing to do) or leased (ms until the lease ends). */
export async function chunkState(db: Db, jobId: string, chunkNo: number): Promise<{ settled: true } | { settled: false; leaseLeftMs: number }> {
  const row = (
    await sql<{ chunk_status: number; job_status: number; left_ms: number }>`
      select c.status as chunk_status, j.status as job_status,
        greatest(0, extract(epoch from (c.lease_until - now())) * 1000)::float8 as left_ms
      from job_chunks c join jobs j on j.id = c.job_id where c.job_id = ${jobId} and c.chunk_no = ${chunkNo}`.execute(db)
  ).rows[0];
  if (!row || row.chunk_status === CHUNK_DONE || !ACTIVE.includes(row.job_status as 1 | 2)) return { settled: true };
  return { settled: false, leaseLeftMs: Number(row.left_ms) };
}

/** Extends a lease the runner still holds. */
export async function renewLease(db: Db, jobId: string, chunkNo: number, runner: string, leaseMs: number): Promise<void> {
  await sql`update job_chunks set lease_until = now() + ${leaseMs} * interval '1 millisecond'
    where job_id = ${jobId} and chunk_no = ${chunkNo} and runner = ${runner} and status = ${CHUNK_PENDING}`.execute(db);
}

/** Gives a lease back at once (the chunk failed here and should be retried soon). */
export async function releaseLease(db: Db, jobId: string, chunkNo: number, runner: string): Promise<void> {
  await sql`update job_chunks set lease_until = null, runner = null where job_id = ${jobId} and chunk_no = ${chunkNo} and runner = ${runner} and status = ${CHUNK_PENDING}`.execute(db);
}

/**
 * Marks the chunk done and adds its items to the job, once: a repeated completion finds the
 * chunk done and adds nothing. The job row is locked by the caller, so completions of one job
 * are serialised and exactly one sees no chunk left.
 */
export async function completeChunk(tx: Transaction<Database>, jobId: string, chunkNo: number, items: number): Promise<{ counted: boolean; remaining: number }> {
  const done = await tx
    .updateTable("job_chunks")
    .set({ status: CHUNK_DONE, items, runner: null, lease_until: null })
    .where("job_id", "=", jobId)
    .where("chunk_no", "=", chunkNo)
    .where("status", "=", CHUNK_PENDING)
    .returning("chunk_no")
    .executeTakeFirst();
  if (done && items !== 0) {
    await tx.updateTable("jobs").set({ items_done: sql`items_done + ${items}`, updated_at: sql`now()` }).where("id", "=", jobId).execute();
  }
  const left = await tx.selectFrom("job_chunks").select((eb) => eb.fn.countAll<string>().as("n")).where("job_id", "=", jobId).where("status", "=", CHUNK_PENDING).executeTakeFirstOrThrow();
  return { counted: done !== undefined, remaining: Number(left.n) };
}

/** Sets a job's progress outright (a job that measures it itself, e.g. a reindex). */
export async function setProgress(tx: Transaction<Database>, jobId: string, itemsDone: number, itemsTotal: number): Promise<void> {
  await tx.updateTable("jobs").set({ items_done: itemsDone, items_total: itemsTotal, updated_at: sql`now()` }).where("id", "=", jobId).where("status", "in", ACTIVE).execute();
}

/** Claims the right to append a progress event: true at most once a second per job. */
export async function takeEventSlot(tx: Transaction<Database>, jobId: string): Promise<boolean> {
  const row = await sql`update jobs set last_event_at = now() where id = ${jobId}
    and (last_event_at is null or last_event_at < now() - interval '1 second') returning 1`.execute(tx);
  return row.rows.length > 0;
}

export async function pendingChunkNumbers(db: Db, jobId: string): Promise<number[]> {
  const rows = await db.selectFrom("job_chunks").select("chunk_no").where("job_id", "=", jobId).where("status", "=", CHUNK_PENDING).orderBy("chunk_no").execute();
  return rows.map((r) => r.chunk_no);
}

export async function chunkCount(db: Db, jobId: string): Promise<number> {
  const row = await db.selectFrom("job_chunks").select((eb) => eb.fn.countAll<string>().as("n")).where("job_id", "=", jobId).executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Active jobs nothing has moved for `quietMs`: their work may have been lost before publication. */
export async function findStalled(db: Db, quietMs: number, limit: number): Promise<JobRow[]> {
  return db
    .selectFrom("jobs")
    .selectAll()
    .where("status", "in", ACTIVE)
    .where("updated_at", "<", sql<Date>`now() - ${quietMs} * interval '1 millisecond'`)
    .orderBy("updated_at")
    .limit(limit)
    .execute();
}

/** Jobs whose output has expired (their files are deleted first, then clearOutputs). */
export async function findExpired(db: Db, limit: number): Promise<string[]> {
  const rows = await db.selectFrom("jobs").select("id").where("expires_at", "<=", sql<Date>`now()`).orderBy("expires_at").limit(limit).execute();
  return rows.map((r) => r.id);
}

/** Forgets expired outputs; the rows stay as history. */
export async function clearOutputs(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.updateTable("jobs").set({ expires_at: null, output_name: null, output_type: null, output_size: null, output_sha256: null }).where("id", "in", [...ids]).execute();
}

export async function deleteJobsOf(db: Db, ownerId: string): Promise<string[]> {
  const rows = await db.deleteFrom("jobs").where("owner_id", "=", ownerId).returning("id").execute();
  return rows.map((r) => r.id);
}
