/**
 * `npm run reindex` as a job: one chunk that runs src/search/reindex.ts and feeds its progress
 * into the job row. The reindex stores its own position after each batch, so a chunk taken over
 * after a crash resumes where the dead node stopped (restart applies to the first attempt only).
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { reindex } from "../search/reindex.ts";
import type { SearchIndex } from "../search/search-index.ts";
import type { ChunkContext, JobKindHandler, JobPlan } from "./job-kind.ts";
import type { JobRow } from "./job-repository.ts";

export class ReindexJob implements JobKindHandler {
  readonly #db: Kysely<Database>;
  readonly #index: SearchIndex;

  constructor(db: Kysely<Database>, index: SearchIndex) {
    this.#db = db;
    this.#index = index;
  }

  plan(restart: boolean): JobPlan {
    return { params: { restart }, chunks: [{ part: "reindex" }], itemsTotal: 0 };
  }

  async runChunk(job: JobRow, _chunkNo: number, _range: Record<string, unknown>, context: ChunkContext): Promise<number> {
    const restart = job.params.restart === true && context.attempt === 1;
    await reindex({ db: this.#db, index: this.#index, restart, onProgress: (p) => void context.progress(p.copied, p.total).catch(() => undefined) });
    // Progress was set outright as it went; nothing to add.
    return 0;
  }

  async finalize(): Promise<null> {
    return null;
  }
}
