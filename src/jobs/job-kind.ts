/** What each kind of job does: how its work is split, how a chunk is done, how it ends. */
import type { JobRow } from "./job-repository.ts";

/** The work of a new job: its chunks (each a range of work) and how many items in all. */
export interface JobPlan {
  params: Record<string, unknown>;
  chunks: Record<string, unknown>[];
  itemsTotal: number;
}

export interface ChunkContext {
  /** For a chunk that measures the job's progress itself (a reindex): sets done/total outright. */
  progress(itemsDone: number, itemsTotal: number): Promise<void>;
  /** Deliveries after a crash or failure see a count above 1. */
  attempt: number;
}

/** The assembled output of an export. */
export interface OutputFile {
  name: string;
  type: string;
  size: number;
  sha256: string;
}

export interface JobKindHandler {
  /**
   * Does one chunk idempotently (a repeat rewrites the same part) and returns how many items
   * it adds to the job's items_done (added once, when the chunk is first recorded done).
   */
  runChunk(job: JobRow, chunkNo: number, range: Record<string, unknown>, context: ChunkContext): Promise<number>;
  /** Assembles the output once every chunk is done; null for jobs that write no file. Idempotent. */
  finalize(job: JobRow, chunks: number): Promise<OutputFile | null>;
}
