/**
 * The jobs' housekeeping on consumer nodes: deletes outputs past JOB_OUTPUT_TTL_HOURS, and
 * republishes the work of active jobs nothing has moved for a while (their items may have been
 * lost between the commit and the publish, e.g. the node died there). Republishing is
 * harmless: chunks are claimed through their rows, and a done chunk is acked at once.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { JobFiles } from "./job-files.ts";
import * as repo from "./job-repository.ts";
import type { JobRunner } from "./job-runner.ts";

/** An active job this quiet gets its pending work republished. */
const STALLED_AFTER_MS = 60_000;
const BATCH = 100;

export interface JobSweeperOptions {
  db: Kysely<Database>;
  files: JobFiles;
  runner: JobRunner;
  logger: Logger;
  intervalMs: number;
}

export class JobSweeper {
  readonly #o: JobSweeperOptions;
  #timer: NodeJS.Timeout | null = null;
  #sweeping: Promise<void> | null = null;

  constructor(options: JobSweeperOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#sweeping ??= this.sweep()
        .catch((error: unknown) => this.#o.logger.warn({ err: error }, "job sweep failed; next time"))
        .finally(() => (this.#sweeping = null));
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#sweeping;
  }

  async sweep(): Promise<void> {
    const { db, files, runner } = this.#o;
    for (let ids = await repo.findExpired(db, BATCH); ids.length > 0; ids = await repo.findExpired(db, BATCH)) {
      // Files first: if clearing the rows fails, the next sweep finds them again.
      for (const id of ids) await files.removeAll(id);
      await repo.clearOutputs(db, ids);
    }
    for (const job of await repo.findStalled(db, STALLED_AFTER_MS, BATCH)) {
      const pending = await repo.pendingChunkNumbers(db, job.id);
      if (pending.length > 0) await runner.publishChunks(job.id, pending);
      else await runner.publishFinalize(job.id);
    }
  }
}
