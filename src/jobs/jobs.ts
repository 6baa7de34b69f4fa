/**
 * Builds the jobs part of a node (or of `npm run reindex`): files, kinds, runner, scheduler,
 * sweeper and service, from the shared pieces of the app.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { JobsConfig } from "../config.ts";
import type { Database } from "../db/schema.ts";
import type { EventPublisher, Subjects } from "../log/index.ts";
import type { BlobStore } from "../media/index.ts";
import type { RetentionPolicy } from "../retention/index.ts";
import type { SearchIndex } from "../search/search-index.ts";
import type { Consumer, WorkerRuntime } from "../workers/index.ts";
import { ConversationExport } from "./conversation-export.ts";
import { JobFiles } from "./job-files.ts";
import type { JobKindHandler } from "./job-kind.ts";
import { Kind } from "./job-repository.ts";
import { JobRunner } from "./job-runner.ts";
import { JobScheduler } from "./job-scheduler.ts";
import { JobService } from "./job-service.ts";
import { JobSweeper } from "./job-sweeper.ts";
import { ReindexJob } from "./reindex-job.ts";
import { UserDataExport } from "./user-data-export.ts";

export interface JobsOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  workers: WorkerRuntime;
  subjects: Subjects;
  config: JobsConfig;
  blobs: BlobStore;
  retention: RetentionPolicy;
  search: SearchIndex;
  logger: Logger;
}

export interface Jobs {
  readonly service: JobService;
  readonly scheduler: JobScheduler;
  readonly runner: JobRunner;
  readonly reindex: ReindexJob;
  /**
   * Starts the job-runner consumer and (unless `sweep` is false, as for a CLI hosting a runner
   * for its own job) the sweeper. On nodes that run consumers.
   */
  startWorkers(options?: { sweep?: boolean }): Promise<void>;
  /** One sweep now (expired outputs, stalled jobs); the consumer nodes run it on a timer. */
  sweep(): Promise<void>;
  stop(): Promise<void>;
}

export function createJobs(o: JobsOptions): Jobs {
  const files = new JobFiles(o.config.dir);
  const conversationExport = new ConversationExport({ db: o.db, files, blobs: o.blobs, retention: o.retention, chunkMessages: o.config.chunkMessages });
  const userDataExport = new UserDataExport({ db: o.db, files, blobs: o.blobs, retention: o.retention });
  const reindex = new ReindexJob(o.db, o.search);
  const kinds = new Map<number, JobKindHandler>([
    [Kind.CONVERSATION_EXPORT, conversationExport],
    [Kind.USER_DATA_EXPORT, userDataExport],
    [Kind.SEARCH_REINDEX, reindex],
  ]);
  const runner = new JobRunner({
    db: o.db,
    publisher: o.publisher,
    workers: o.workers,
    subjects: o.subjects,
    files,
    kinds,
    logger: o.logger,
    outputTtlMs: o.config.outputTtlMs,
    concurrency: o.config.concurrency,
  });
  const scheduler = new JobScheduler({ db: o.db, publisher: o.publisher, runner, files });
  const sweeper = new JobSweeper({ db: o.db, files, runner, logger: o.logger, intervalMs: o.config.sweepIntervalMs });
  const service = new JobService({ db: o.db, scheduler, files, conversationExport, userDataExport, reindex });
  let consumer: Consumer | null = null;
  return {
    service,
    scheduler,
    runner,
    reindex,
    async startWorkers({ sweep = true } = {}) {
      consumer = await o.workers.startConsumer(runner.spec());
      if (sweep) sweeper.start();
    },
    sweep: () => sweeper.sweep(),
    async stop() {
      await sweeper.stop();
      await consumer?.stop();
    },
  };
}
