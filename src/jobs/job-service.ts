/**
 * JobService: exports and reindexing as asynchronous jobs (see job-runner.ts for how work is
 * done). A conversation export is for the conversation's admins: anyone else, member or not,
 * gets NOT_FOUND, as the contract says, so a non-member never learns the conversation exists.
 * A job is its owner's: anyone else gets NOT_FOUND for it.
 */
import { setTimeout as delay } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { ExportFormat } from "../../gen/parley/v1/job_pb.ts";
import {
  DownloadJobOutputResponseSchema,
  WatchJobResponseSchema,
  type CancelJobRequest,
  type DownloadJobOutputRequest,
  type JobService as JobServiceDesc,
  type ListJobsRequest,
  type StartExportRequest,
  type StartReindexRequest,
  type WatchJobRequest,
} from "../../gen/parley/v1/job_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { findRole, Role } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { pageSize, requireUuid } from "../validation.ts";
import type { ConversationExport } from "./conversation-export.ts";
import type { JobFiles } from "./job-files.ts";
import { toJob } from "./job-mapper.ts";
import * as repo from "./job-repository.ts";
import type { JobScheduler } from "./job-scheduler.ts";
import type { ReindexJob } from "./reindex-job.ts";
import type { UserDataExport } from "./user-data-export.ts";

/** WatchJob reads the job row this often and sends a frame when it moved. */
const WATCH_POLL_MS = 250;
/** Largest DownloadJobOutput chunk. */
const DOWNLOAD_PIECE_BYTES = 1024 * 1024;
const DEFAULT_PAGE = 50;
const MAX_PAGE = 200;
const PAGE_KIND = "jobs";

export interface JobServiceOptions {
  db: Kysely<Database>;
  scheduler: JobScheduler;
  files: JobFiles;
  conversationExport: ConversationExport;
  userDataExport: UserDataExport;
  reindex: ReindexJob;
}

export class JobService implements ServiceImpl<typeof JobServiceDesc> {
  readonly #o: JobServiceOptions;

  constructor(options: JobServiceOptions) {
    this.#o = options;
  }

  async startExport(req: StartExportRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const format = requireFormat(req.format);
    const { scheduler, db } = this.#o;
    if (req.target.case === "conversationId") {
      const conversationId = requireUuid("conversation_id", req.target.value);
      if ((await findRole(db, conversationId, userId)) !== Role.ADMIN) throw new NotFoundError("conversation");
      const plan = await this.#o.conversationExport.plan(conversationId);
      const row = await scheduler.start({ kind: repo.Kind.CONVERSATION_EXPORT, ownerId: userId, conversationId, format }, plan);
      return { job: toJob(row) };
    }
    if (req.target.case === "myData") {
      if (!req.target.value) throw new InvalidInputError("my_data", "must be true to export your data");
      const row = await scheduler.start({ kind: repo.Kind.USER_DATA_EXPORT, ownerId: userId, conversationId: null, format }, this.#o.userDataExport.plan());
      return { job: toJob(row) };
    }
    throw new InvalidInputError("target", "set conversation_id or my_data");
  }

  async startReindex(req: StartReindexRequest, ctx: HandlerContext) {
    const caller = requireCaller(ctx);
    if (!caller.operator) throw new PermissionDeniedError("the operator role is required", "OPERATOR_REQUIRED");
    const row = await this.#o.scheduler.start({ kind: repo.Kind.SEARCH_REINDEX, ownerId: caller.userId, conversationId: null, format: ExportFormat.UNSPECIFIED }, this.#o.reindex.plan(req.restart));
    return { job: toJob(row) };
  }

  async *watchJob(req: WatchJobRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    let row = await this.#ownJob(userId, req.jobId);
    let sent = "";
    for (;;) {
      const moved = fingerprint(row);
      if (moved !== sent) {
        sent = moved;
        // Messages, not plain objects: the lean gRPC path encodes streamed frames as they are.
        yield create(WatchJobResponseSchema, { job: toJob(row) });
      }
      if (row.status >= repo.Status.SUCCEEDED) return;
      try {
        await delay(WATCH_POLL_MS, undefined, { signal: ctx.signal });
      } catch {
        return; // the call ended
      }
      const next = await repo.findJob(this.#o.db, row.id);
      if (!next) return; // erased with its owner
      row = next;
    }
  }

  async cancelJob(req: CancelJobRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const jobId = requireUuid("job_id", req.jobId);
    return { job: toJob(await this.#o.scheduler.cancel(userId, jobId)) };
  }

  async listJobs(req: ListJobsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, MAX_PAGE);
    const before = req.pageToken === "" ? null : requireUuid("page_token", String(decodePageToken(PAGE_KIND, req.pageToken, ["id"]).id));
    const rows = await repo.listJobsOf(this.#o.db, userId, before, limit + 1);
    const page = rows.slice(0, limit);
    const now = new Date();
    return { jobs: page.map((r) => toJob(r, now)), nextPageToken: rows.length > limit ? encodePageToken(PAGE_KIND, { id: page.at(-1)!.id }) : "" };
  }

  async *downloadJobOutput(req: DownloadJobOutputRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const job = await this.#ownJob(userId, req.jobId);
    if (req.offset < 0n) throw new InvalidInputError("offset", "must not be negative");
    if (job.status !== repo.Status.SUCCEEDED || job.output_size === null) throw new FailedPreconditionError("the job has no output to download (not succeeded, no file, or expired)", "NO_JOB_OUTPUT");
    const total = Number(job.output_size);
    if (req.offset > BigInt(total)) throw new InvalidInputError("offset", `is beyond the end of the output (${total} bytes)`);
    if ((await this.#o.files.outputSize(job.id)) !== total) throw new NotFoundError("job output");
    let sent = false;
    for await (const piece of this.#o.files.readOutput(job.id, Number(req.offset), DOWNLOAD_PIECE_BYTES)) {
      if (ctx.signal.aborted) return;
      sent = true;
      yield create(DownloadJobOutputResponseSchema, { data: piece.data, offset: BigInt(piece.offset), totalBytes: BigInt(total) });
    }
    // Resuming at the very end: one empty frame still tells the size.
    if (!sent) yield create(DownloadJobOutputResponseSchema, { offset: req.offset, totalBytes: BigInt(total) });
  }

  async #ownJob(userId: string, jobId: string): Promise<repo.JobRow> {
    const row = await repo.findJob(this.#o.db, requireUuid("job_id", jobId));
    if (!row || row.owner_id !== userId) throw new NotFoundError("job");
    return row;
  }
}

function requireFormat(format: ExportFormat): ExportFormat {
  if (format === ExportFormat.UNSPECIFIED) return ExportFormat.JSONL;
  if (format !== ExportFormat.JSONL && format !== ExportFormat.ZIP) throw new InvalidInputError("format", "is not a known export format");
  return format;
}

/** What a WatchJob frame is sent for: the job moved. */
function fingerprint(row: repo.JobRow): string {
  return `${row.status}/${row.items_done}/${row.items_total}/${row.output_sha256 ?? ""}`;
}

