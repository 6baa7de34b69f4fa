/**
 * JobService's rules: bad input and wrong callers on every RPC get the right code and write
 * nothing; cancel; ListJobs paging; the active-job limit; reindex for operators only.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { ExportFormat, JobKind, JobStatus } from "../../gen/parley/v1/job_pb.ts";
import { expectCode } from "../helpers/expect.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { newUsers, type Clients } from "../helpers/test-server.ts";
import { startStoryServer, type StoryServer } from "../stories/support.ts";
import { assertWellFormedFrames, download, watchToEnd } from "./helpers.ts";
import { existsSync } from "node:fs";
import path from "node:path";

/** Drains a server stream (errors surface as the promise's rejection). */
async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

describe("job rules", function () {
  this.timeout(60_000);
  let server: StoryServer;
  let busy: string; // a conversation whose export takes a while (one message per chunk)
  let owner: string;
  let O: Clients;
  let member: string;
  let outsider: string;
  before(async function () {
    server = await startStoryServer({ JOB_CHUNK_MESSAGES: "1", JOB_RUNNER_CONCURRENCY: "1", LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent" });
    const users = await newUsers(server, 3, "rules");
    [owner, member, outsider] = [users[0]!, users[1]!, users[2]!];
    O = server.clientsFor(owner!, "grpc");
    busy = (await createGroup(O, [member!, outsider!], "busy")).id;
    await O.conversations.removeMember({ conversationId: busy, userId: outsider! });
    for (let i = 0; i < 300; i += 50) await Promise.all(Array.from({ length: 50 }, (_, n) => sendText(O, busy, `busy ${i + n}`)));
  });
  after(async () => {
    await server?.stop();
  });

  const start = (clients: Clients, conversationId: string, format: ExportFormat = ExportFormat.JSONL) =>
    clients.jobs.startExport({ target: { case: "conversationId", value: conversationId }, format });

  async function jobsOf(clients: Clients): Promise<number> {
    return (await clients.jobs.listJobs({ pageSize: 200 })).jobs.length;
  }

  it("refuses bad StartExport input and every caller but an admin, writing nothing", async () => {
    const M = server.clientsFor(member!, "connect");
    const X = server.clientsFor(outsider!, "grpc");
    const before = await jobsOf(O);
    await expectCode(O.jobs.startExport({}), Code.InvalidArgument);
    await expectCode(start(O, "not-a-uuid"), Code.InvalidArgument);
    await expectCode(O.jobs.startExport({ target: { case: "myData", value: false } }), Code.InvalidArgument);
    await expectCode(start(O, busy, 9 as ExportFormat), Code.InvalidArgument);
    await expectCode(start(O, randomUUID()), Code.NotFound);
    await expectCode(start(M, busy), Code.NotFound); // a member who is not an admin
    await expectCode(start(X, busy), Code.NotFound); // not a member (any more)
    assert.equal(await jobsOf(O), before);
    assert.equal(await jobsOf(M), 0);
    assert.equal(await jobsOf(X), 0);
  });

  it("lets operators alone start a reindex", async () => {
    const [plain] = await newUsers(server, 1, "noop");
    const P = server.clientsFor(plain!, "connect");
    await expectCode(P.jobs.startReindex({}), Code.PermissionDenied);
    assert.equal(await jobsOf(P), 0);
    const [op] = await newUsers(server, 1, "op");
    const Op = server.clientsFor(op!, "grpc", { roles: ["operator"] });
    const job = (await Op.jobs.startReindex({})).job!;
    assert.equal(job.kind, JobKind.SEARCH_REINDEX);
    const frames = await watchToEnd(Op, job.id);
    assertWellFormedFrames(frames);
    assert.equal(frames.at(-1)!.status, JobStatus.SUCCEEDED, frames.at(-1)!.error);
    assert.equal(frames.at(-1)!.output, undefined, "a reindex writes no file");
    await expectCode(drain(Op.jobs.downloadJobOutput({ jobId: job.id })), Code.FailedPrecondition);
  });

  it("shows a job to its owner alone: watch, cancel, download and list of others get NOT_FOUND", async () => {
    const X = server.clientsFor(outsider!, "connect");
    const job = (await start(O, busy)).job!;
    try {
      await expectCode(drain(X.jobs.watchJob({ jobId: job.id })), Code.NotFound);
      await expectCode(X.jobs.cancelJob({ jobId: job.id }), Code.NotFound);
      await expectCode(drain(X.jobs.downloadJobOutput({ jobId: job.id })), Code.NotFound);
      assert.equal(await jobsOf(X), 0);
      await expectCode(drain(O.jobs.watchJob({ jobId: "nope" })), Code.InvalidArgument);
      await expectCode(drain(O.jobs.watchJob({ jobId: randomUUID() })), Code.NotFound);
      await expectCode(O.jobs.cancelJob({ jobId: "" }), Code.InvalidArgument);
      await expectCode(drain(O.jobs.downloadJobOutput({ jobId: job.id, offset: -1n })), Code.InvalidArgument);
      await expectCode(O.jobs.listJobs({ pageSize: -1 }), Code.InvalidArgument);
      await expectCode(O.jobs.listJobs({ pageToken: "garbage" }), Code.InvalidArgument);
    } finally {
      await O.jobs.cancelJob({ jobId: job.id }).catch(() => undefined);
    }
  });

  it("cancels a running export: the watch ends cancelled, its files go, and cancelling again is FAILED_PRECONDITION", async () => {
    const job = (await start(O, busy)).job!;
    const watching = watchToEnd(O, job.id);
    await new Promise((r) => setTimeout(r, 300));
    const cancelled = (await O.jobs.cancelJob({ jobId: job.id })).job!;
    assert.equal(cancelled.status, JobStatus.CANCELLED);
    assert.ok(cancelled.finishedAt, "a cancelled job has ended");
    const frames = await watching;
    assertWellFormedFrames(frames);
    assert.equal(frames.at(-1)!.status, JobStatus.CANCELLED);
    await expectCode(O.jobs.cancelJob({ jobId: job.id }), Code.FailedPrecondition);
    await expectCode(drain(O.jobs.downloadJobOutput({ jobId: job.id })), Code.FailedPrecondition);
    // Workers skip its chunks; a chunk in hand removes its part when it sees the cancel.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(existsSync(path.join(server.dataDir, "jobs", job.id)), false, "the job's files are gone");
    const after = (await O.jobs.listJobs({})).jobs.find((j) => j.id === job.id)!;
    assert.equal(after.status, JobStatus.CANCELLED);
    assert.ok(after.progress!.itemsDone < after.progress!.itemsTotal, "it stopped before the end");
  });

  it("allows 3 active jobs per user; a 4th is RESOURCE_EXHAUSTED and writes nothing", async () => {
    const [u, v, w] = await newUsers(server, 3, "limit");
    const U = server.clientsFor(u!, "grpc");
    const group = (await createGroup(U, [v!, w!])).id;
    for (let i = 0; i < 200; i += 50) await Promise.all(Array.from({ length: 50 }, (_, n) => sendText(U, group, `l ${i + n}`)));
    const jobs = [];
    for (let i = 0; i < 3; i++) jobs.push((await start(U, group)).job!);
    try {
      await expectCode(start(U, group), Code.ResourceExhausted);
      await expectCode(U.jobs.startExport({ target: { case: "myData", value: true } }), Code.ResourceExhausted);
      assert.equal(await jobsOf(U), 3);
    } finally {
      for (const job of jobs) await U.jobs.cancelJob({ jobId: job.id }).catch(() => undefined);
    }
    // Ended jobs no longer count.
    const again = (await U.jobs.startExport({ target: { case: "myData", value: true } })).job!;
    assert.equal((await watchToEnd(U, again.id)).at(-1)!.status, JobStatus.SUCCEEDED);
  });

  it("lists the caller's jobs newest first, a page at a time", async () => {
    const [u] = await newUsers(server, 1, "list");
    const U = server.clientsFor(u!, "connect");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = (await U.jobs.startExport({ target: { case: "myData", value: true } })).job!;
      await watchToEnd(U, job.id);
      ids.push(job.id);
    }
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await U.jobs.listJobs({ pageSize: 2, pageToken });
      assert.ok(page.jobs.length <= 2);
      seen.push(...page.jobs.map((j) => j.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    assert.deepEqual(seen, [...ids].reverse(), "newest first, each once");
    assert.equal(pages, 3);
    const { data } = await download(U, ids[0]!);
    assert.ok(data.length > 0);
  });

  it("erases a user's jobs and their output files with the account", async () => {
    const [u] = await newUsers(server, 1, "erase");
    const U = server.clientsFor(u!, "grpc");
    const job = (await U.jobs.startExport({ target: { case: "myData", value: true } })).job!;
    assert.equal((await watchToEnd(U, job.id)).at(-1)!.status, JobStatus.SUCCEEDED);
    assert.ok(existsSync(path.join(server.dataDir, "jobs", job.id, "output")), "the output is on disk");
    await U.users.deleteAccount({ confirmUserId: u! });
    assert.equal(existsSync(path.join(server.dataDir, "jobs", job.id)), false, "the output went with the account");
    // The id signs in again as a new, empty account: no jobs.
    assert.equal(await jobsOf(U), 0);
  });
});
