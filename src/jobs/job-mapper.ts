/** Job rows to parley.v1.Job, with the progress (percent, ETA) worked out from the row. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { JobOutputSchema, JobProgressSchema, JobSchema, type ExportFormat, type Job, type JobKind, type JobProgress, type JobStatus } from "../../gen/parley/v1/job_pb.ts";
import { Status, type JobRow } from "./job-repository.ts";

export function toJob(row: JobRow, now = new Date()): Job {
  return create(JobSchema, {
    id: row.id,
    kind: row.kind as JobKind,
    status: row.status as JobStatus,
    ownerId: row.owner_id,
    conversationId: row.conversation_id ?? "",
    format: row.format as ExportFormat,
    progress: toProgress(row, now),
    ...(row.output_name !== null && {
      output: create(JobOutputSchema, {
        fileName: row.output_name,
        contentType: row.output_type ?? "",
        sizeBytes: BigInt(row.output_size ?? 0),
        sha256: row.output_sha256 ?? "",
      }),
    }),
    error: row.error,
    createdAt: timestampFromDate(row.created_at),
    ...(row.finished_at && { finishedAt: timestampFromDate(row.finished_at) }),
    ...(row.expires_at && { expiresAt: timestampFromDate(row.expires_at) }),
  });
}

/** Percent of the total, and the time left at the rate since the job started (0 when unknown or ended). */
export function toProgress(row: JobRow, now: Date): JobProgress {
  const done = Number(row.items_done);
  const total = Number(row.items_total);
  const ended = row.status >= Status.SUCCEEDED;
  const percent = row.status === Status.SUCCEEDED ? 100 : total > 0 ? Math.min(100, (done / total) * 100) : 0;
  let eta = 0;
  if (!ended && row.started_at && done > 0 && total > done) {
    const elapsed = (now.getTime() - row.started_at.getTime()) / 1000;
    eta = elapsed > 0 ? (total - done) / (done / elapsed) : 0;
  }
  return create(JobProgressSchema, { itemsDone: BigInt(done), itemsTotal: BigInt(total), percent, etaSeconds: eta });
}
