/**
 * The "job-runner" durable consumer: takes job work items (one per chunk, then one to finalize)
 * from the work stream on any consumer node. A chunk is claimed with a lease in its row (so a
 * redelivery waits for a live holder and takes over a dead one), done by its kind's handler
 * (writing its part file idempotently), and recorded done in one transaction that adds its
 * items once. The delivery is acked only after that commit: a node killed mid-chunk leaves it
 * unacked, and JetStream hands it to another node after the ack wait. The completion that
 * leaves no chunk pending publishes the finalize item, which assembles the output.
 */
import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import type { Kysely, Transaction } from "kysely";
import type { Logger } from "pino";
import { JobProgressedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import { writeWithEvents, type EventPublisher, type NewEvent, type Subjects } from "../log/index.ts";
import { failureBackoffMs, type ConsumerSpec, type Delivered, type Outcome, type WorkerRuntime } from "../workers/index.ts";
import type { JobFiles } from "./job-files.ts";
import type { ChunkContext, JobKindHandler } from "./job-kind.ts";
import { toJob } from "./job-mapper.ts";
import * as repo from "./job-repository.ts";

/** How long a claimed chunk is another delivery's to wait for; renewed while the chunk runs. */
export const CHUNK_LEASE_MS = 10_000;
/**
 * JetStream redelivers an unacked job item after this: the time a dead node's chunk waits
 * before another node takes it (plus what is left of the chunk's lease).
 */
export const JOB_ACK_WAIT_MS = 10_000;
/** A chunk (or finalize) that fails this many times fails its job. */
const MAX_ATTEMPTS = 5;
/** Progress measured inside a chunk (a reindex) is written at most this often. */
const PROGRESS_WRITE_MS = 250;

export type JobWork = { jobId: string; chunkNo: number } | { jobId: string; finalize: true };

export interface JobRunnerOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  workers: WorkerRuntime;
  subjects: Subjects;
  files: JobFiles;
  kinds: ReadonlyMap<number, JobKindHandler>;
  logger: Logger;
  /** How long an output is kept. */
  outputTtlMs: number;
  /** Chunks one node works on at once. */
  concurrency: number;
}

/** The event telling the owner where a job is. */
export function jobProgressed(row: repo.JobRow): NewEvent {
  return { conversationId: null, targetUserId: row.owner_id, actorId: row.owner_id, kind: { case: "jobProgressed", value: create(JobProgressedSchema, { job: toJob(row) }) } };
}

export class JobRunner {
  readonly #o: JobRunnerOptions;
  /** This process's name in chunk leases. */
  readonly #runner = `runner-${process.pid}-${randomBytes(4).toString("hex")}`;

  constructor(options: JobRunnerOptions) {
    this.#o = options;
  }

  /** Publishes the work items of chunks (a republish of the same chunk is stored once). */
  async publishChunks(jobId: string, chunkNos: readonly number[]): Promise<void> {
    const { workers, subjects } = this.#o;
    for (const chunkNo of chunkNos) {
      await workers.publishWork(subjects.jobWork("chunk"), encode({ jobId, chunkNo }), `job:${jobId}:${chunkNo}`);
    }
  }

  async publishFinalize(jobId: string): Promise<void> {
    await this.#o.workers.publishWork(this.#o.subjects.jobWork("finalize"), encode({ jobId, finalize: true }), `job:${jobId}:finalize`);
  }

  /** The durable consumer's spec; start it on nodes that run consumers. */
  spec(): ConsumerSpec<JobWork> {
    return {
      name: "job-runner",
      filterSubject: this.#o.subjects.allJobWork,
      decode: (data) => {
        const value = JSON.parse(Buffer.from(data).toString("utf8")) as JobWork;
        if (typeof value.jobId !== "string") throw new Error("a job work item without a job id");
        return value;
      },
      handle: (batch) => Promise.all(batch.map((d) => this.#handle(d))),
      batchSize: this.#o.concurrency,
      ackWaitMs: JOB_ACK_WAIT_MS,
    };
  }

  async #handle(delivered: Delivered<JobWork>): Promise<Outcome> {
    const work = delivered.value;
    try {
      return "finalize" in work ? await this.#finalize(work.jobId, delivered.deliveryCount) : await this.#chunk(work.jobId, work.chunkNo);
    } catch (error) {
      // Failures are counted and handled inside; reaching here means the database is away.
      this.#o.logger.warn({ err: error, job: work.jobId }, "job work failed; retrying later");
      return { retryAfterMs: failureBackoffMs(delivered.deliveryCount) };
    }
  }

  async #chunk(jobId: string, chunkNo: number): Promise<Outcome> {
    const { db, files, kinds, logger } = this.#o;
    const claimed = await repo.claimChunk(db, jobId, chunkNo, this.#runner, CHUNK_LEASE_MS);
    if (!claimed) {
      const state = await repo.chunkState(db, jobId, chunkNo);
      return state.settled ? "done" : { retryAfterMs: Math.ceil(state.leaseLeftMs) + 250 };
    }
    let job = (await repo.findJob(db, jobId))!;
    if (job.status === repo.Status.QUEUED) {
      job =
        (await this.#write(async (tx, recorded) => {
          const running = await repo.markRunning(tx, jobId);
          if (running) recorded.push(jobProgressed(running));
          return running;
        })) ?? job;
    }
    const kind = kinds.get(job.kind)!;
    const renewal = setInterval(() => void repo.renewLease(db, jobId, chunkNo, this.#runner, CHUNK_LEASE_MS).catch(() => undefined), CHUNK_LEASE_MS / 3);
    const progress = this.#progressWriter(jobId);
    let items: number;
    try {
      items = await kind.runChunk(job, chunkNo, claimed.range, { attempt: claimed.attempts, progress: progress.set });
      await progress.flush();
    } catch (error) {
      await progress.flush().catch(() => undefined);
      logger.warn({ err: error, job: jobId, chunk: chunkNo, attempt: claimed.attempts }, "job chunk failed");
      if (claimed.attempts >= MAX_ATTEMPTS) {
        await this.fail(jobId, `chunk ${chunkNo} failed ${claimed.attempts} times`);
        return "done";
      }
      await repo.releaseLease(db, jobId, chunkNo, this.#runner);
      return { retryAfterMs: failureBackoffMs(claimed.attempts) };
    } finally {
      clearInterval(renewal);
    }

    const completion = await this.#write(async (tx, recorded) => {
      const locked = await repo.lockJob(tx, jobId);
      if (!locked || locked.status !== repo.Status.RUNNING) return { ended: locked?.status ?? repo.Status.CANCELLED, remaining: -1 };
      const { remaining } = await repo.completeChunk(tx, jobId, chunkNo, items);
      if (remaining > 0 && (await repo.takeEventSlot(tx, jobId))) recorded.push(jobProgressed((await repo.findJob(tx, jobId))!));
      return { ended: null, remaining };
    });
    if (completion.ended !== null) {
      // The job ended while this chunk ran: cancelled or failed, its files must not stay behind;
      // succeeded (a twin delivery of this chunk finished first), only this late part goes.
      if (completion.ended === repo.Status.SUCCEEDED) await files.removePart(jobId, chunkNo);
      else await files.removeAll(jobId);
      return "done";
    }
    const { remaining } = completion;
    if (remaining === 0) await this.publishFinalize(jobId);
    return "done";
  }

  async #finalize(jobId: string, deliveryCount: number): Promise<Outcome> {
    const { db, files, kinds, logger, outputTtlMs } = this.#o;
    const job = await repo.findJob(db, jobId);
    if (!job || job.status !== repo.Status.RUNNING) {
      if (job?.status === repo.Status.CANCELLED || job?.status === repo.Status.FAILED) await files.removeAll(jobId);
      return "done";
    }
    if ((await repo.pendingChunkNumbers(db, jobId)).length > 0) return "done"; // the last chunk publishes it again
    const chunks = await repo.chunkCount(db, jobId);
    let output;
    try {
      output = await kinds.get(job.kind)!.finalize(job, chunks);
    } catch (error) {
      logger.warn({ err: error, job: jobId, attempt: deliveryCount }, "job finalize failed");
      if (deliveryCount >= MAX_ATTEMPTS) {
        await this.fail(jobId, `assembling the output failed ${deliveryCount} times`);
        return "done";
      }
      return { retryAfterMs: failureBackoffMs(deliveryCount) };
    }
    const ended = await this.#write(async (tx, recorded) => {
      const row = await repo.endJob(tx, jobId, repo.Status.SUCCEEDED, {
        finalTotal: true,
        ...(output && { output, expiresAt: new Date(Date.now() + outputTtlMs) }),
      });
      if (row) recorded.push(jobProgressed(row));
      return row;
    });
    if (ended) {
      await files.removeParts(jobId);
    } else if ((await repo.findJob(db, jobId))?.status !== repo.Status.SUCCEEDED) {
      await files.removeAll(jobId); // cancelled or failed while the output was assembled
    }
    // Else a twin finalize committed first: its output (the same bytes) stays.
    return "done";
  }

  /** Ends an active job as failed and removes its files. */
  async fail(jobId: string, error: string): Promise<void> {
    await this.#write(async (tx, recorded) => {
      const row = await repo.endJob(tx, jobId, repo.Status.FAILED, { error });
      if (row) recorded.push(jobProgressed(row));
    });
    await this.#o.files.removeAll(jobId);
  }

  /** Progress a chunk measures itself: the latest value is written at most every 250 ms, and at the end. */
  #progressWriter(jobId: string): { set: ChunkContext["progress"]; flush(): Promise<void> } {
    let latest: [number, number] | null = null;
    let writing: Promise<void> = Promise.resolve();
    let lastWrite = 0;
    const write = () => {
      const value = latest;
      latest = null;
      lastWrite = Date.now();
      if (!value) return writing;
      writing = writing.then(() =>
        this.#write(async (tx, recorded) => {
          await repo.setProgress(tx, jobId, value[0], value[1]);
          if (await repo.takeEventSlot(tx, jobId)) recorded.push(jobProgressed((await repo.findJob(tx, jobId))!));
        }),
      );
      return writing;
    };
    return {
      set: async (done, total) => {
        latest = [done, total];
        if (Date.now() - lastWrite >= PROGRESS_WRITE_MS) await write();
      },
      flush: () => write(),
    };
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#o.db, this.#o.publisher, work);
  }
}

function encode(work: JobWork): Uint8Array {
  return Buffer.from(JSON.stringify(work));
}
