/**
 * Creates jobs (row and chunks in one transaction, then their work items), cancels them, and
 * erases a user's. Used by JobService and by `npm run reindex`.
 */
import type { Kysely, Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, NotFoundError, ResourceExhaustedError } from "../errors.ts";
import { newId } from "../ids.ts";
import { writeWithEvents, type EventPublisher, type NewEvent } from "../log/index.ts";
import type { JobFiles } from "./job-files.ts";
import type { JobPlan } from "./job-kind.ts";
import * as repo from "./job-repository.ts";
import { jobProgressed, type JobRunner } from "./job-runner.ts";

/** Queued or running jobs one user may have at once. */
export const MAX_ACTIVE_JOBS_PER_USER = 3;

export interface JobSchedulerOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  runner: JobRunner;
  files: JobFiles;
}

export interface JobRequest {
  kind: number;
  ownerId: string;
  conversationId: string | null;
  format: number;
}

export class JobScheduler {
  readonly #o: JobSchedulerOptions;

  constructor(options: JobSchedulerOptions) {
    this.#o = options;
  }

  /**
   * Records the job (queued) and publishes its chunks. At most MAX_ACTIVE_JOBS_PER_USER active
   * jobs per owner (RESOURCE_EXHAUSTED: a quota, retry when one ends) and one reindex at a
   * time (FAILED_PRECONDITION: two would fight over the rebuild target).
   */
  async start(request: JobRequest, plan: JobPlan): Promise<repo.JobRow> {
    const row = await this.#write(async (tx, recorded) => {
      await repo.lockKey(tx, `owner:${request.ownerId}`);
      if ((await repo.countActiveOf(tx, request.ownerId)) >= MAX_ACTIVE_JOBS_PER_USER) {
        throw new ResourceExhaustedError(`at most ${MAX_ACTIVE_JOBS_PER_USER} jobs may be queued or running at once; wait for one to end`, "TOO_MANY_ACTIVE_JOBS");
      }
      if (request.kind === repo.Kind.SEARCH_REINDEX) {
        await repo.lockKey(tx, "reindex");
        if (await repo.findActiveOfKind(tx, repo.Kind.SEARCH_REINDEX)) throw new FailedPreconditionError("a reindex is already queued or running", "REINDEX_RUNNING");
      }
      const created = await repo.insertJob(tx, { id: newId(), ...request, params: plan.params, itemsTotal: plan.itemsTotal }, plan.chunks);
      recorded.push(jobProgressed(created));
      return created;
    });
    await this.#o.runner.publishChunks(row.id, plan.chunks.map((_, n) => n));
    return row;
  }

  /** Cancels the owner's active job; its workers skip its chunks and its files go. */
  async cancel(ownerId: string, jobId: string): Promise<repo.JobRow> {
    const row = await this.#write(async (tx, recorded) => {
      const job = await repo.lockJob(tx, jobId);
      if (!job || job.owner_id !== ownerId) throw new NotFoundError("job");
      const cancelled = await repo.endJob(tx, jobId, repo.Status.CANCELLED);
      if (!cancelled) throw new FailedPreconditionError("the job has already ended", "JOB_ENDED");
      recorded.push(jobProgressed(cancelled));
      return cancelled;
    });
    // The cancel stands even if a file cannot go yet: the chunk in hand removes them when it sees it.
    await this.#o.files.removeAll(jobId).catch(() => undefined);
    return row;
  }

  /** Account erasure: the user's jobs and their files. */
  async eraseJobsOf(userId: string): Promise<void> {
    for (const id of await repo.deleteJobsOf(this.#o.db, userId)) await this.#o.files.removeAll(id);
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#o.db, this.#o.publisher, work);
  }
}
