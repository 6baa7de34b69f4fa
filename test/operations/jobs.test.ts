/**
 * Jobs: exports of a conversation's history (for its admins) and of all of a user's
 * data (for that user), as JSON Lines or a ZIP with media; WatchJob progress ending in a
 * download; job_progressed events on the owner's Subscribe stream; CancelJob, ListJobs,
 * DownloadJobOutput; StartReindex for operators. The headline test seeds 100,000 messages into
 * a real PostgreSQL, SIGKILLs the node the export started on while it runs, and checks the
 * output the other node finishes row by row against the database (needs DATABASE_URL and NATS;
 * skipped otherwise). Through the generated clients over gRPC and Connect, and once through
 * the independent grpc-js client.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ExportFormat, JobKind, JobStatus, type Job } from "../../gen/parley/v1/job_pb.ts";
import type { StartExportRequestSchema } from "../../gen/parley/v1/job_service_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  MAIN_PROTOCOLS,
  createTestDatabase,
  newUsers,
  uniqueId,
  type Clients,
  type FreshDatabase,
  type TestServer,
} from "../helpers/test-server.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, printNodeOutputs, sharedNodeEnv, spawnNode, type NodeProcess } from "../helpers/realtime.ts";
import { assertNoneArrived, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { expectCode, expectInvalidArgument, expectOneOfCodes } from "../helpers/expect.ts";
import { absentIdLike, createDirect, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { call, expectStatus, loadServices, type ServiceClient } from "../helpers/grpc-js.ts";
import {
  assertSameRows,
  assertWatchFrames,
  describeJob,
  download,
  exportedMessages,
  jsonLines,
  mentions,
  seedMessages,
  sha256Hex,
  startOperationsServer,
  statusName,
  storedRows,
  tempDir,
  unzip,
  watchToEnd,
  type ExportedMessage,
} from "./support.ts";

const OPERATOR = { roles: ["operator"] as const };
const PIXEL_PNG = new URL("../stories/fixtures/pixel.png", import.meta.url);

type ExportInit = MessageInitShape<typeof StartExportRequestSchema>;
const conversationExport = (conversationId: string, format: ExportFormat = ExportFormat.JSONL): ExportInit => ({ target: { case: "conversationId", value: conversationId }, format });
const myDataExport = (format: ExportFormat = ExportFormat.JSONL): ExportInit => ({ target: { case: "myData", value: true }, format });

/** Starts an export and checks the job it returns is new and queued. */
async function startExport(clients: Clients, req: ExportInit, ownerId: string): Promise<Job> {
  const res = await clients.jobs.startExport(req);
  const job = res.job;
  assert.ok(job, "StartExport returns the job");
  assert.ok(job.id, "the job has an id");
  assert.equal(job.status, JobStatus.QUEUED, `the new job is queued (${describeJob(job)})`);
  assert.equal(job.ownerId, ownerId, "owner_id is the caller");
  assert.ok(job.createdAt, "created_at is set");
  assert.equal(job.finishedAt, undefined, "a queued job has no finished_at");
  const target = req.target;
  if (target?.case === "conversationId") {
    assert.equal(job.kind, JobKind.CONVERSATION_EXPORT);
    assert.equal(job.conversationId, target.value);
  } else {
    assert.equal(job.kind, JobKind.USER_DATA_EXPORT);
  }
  assert.equal(job.format, (req.format ?? ExportFormat.UNSPECIFIED) === ExportFormat.ZIP ? ExportFormat.ZIP : ExportFormat.JSONL, "format (unset means JSON Lines)");
  return job;
}

/** Watches the job to its end, asserts it succeeded with a file, downloads and checks the file. */
async function finishedExport(clients: Clients, job: Job, timeoutMs = 30_000): Promise<{ frames: Job[]; last: Job; bytes: Buffer }> {
  const frames = await watchToEnd(clients, job.id, { timeoutMs });
  const last = assertWatchFrames(frames, job.id);
  assert.equal(last.status, JobStatus.SUCCEEDED, `the export succeeded: ${describeJob(last)}`);
  const p = last.progress!;
  assert.ok(p.itemsTotal > 0n, "items_total is known");
  assert.equal(p.itemsDone, p.itemsTotal, "a finished job has done every item");
  assert.equal(p.percent, 100, "percent is 100 when done");
  assert.equal(p.etaSeconds, 0, "no time left when done");
  assert.ok(last.finishedAt, "finished_at is set");
  assert.ok(last.expiresAt && timestampMs(last.expiresAt) > timestampMs(last.finishedAt), "expires_at is after finished_at");
  const out = last.output;
  assert.ok(out, "a succeeded export names its output");
  const zip = job.format === ExportFormat.ZIP;
  assert.equal(out.contentType, zip ? "application/zip" : "application/x-ndjson");
  assert.ok(out.fileName.endsWith(zip ? ".zip" : ".jsonl"), `file_name ${out.fileName}`);
  assert.match(out.sha256, /^[0-9a-f]{64}$/, "sha256 is hex");
  const bytes = await download(clients, job.id);
  assert.equal(BigInt(bytes.length), out.sizeBytes, "the download is size_bytes long");
  assert.equal(sha256Hex(bytes), out.sha256, "the download's SHA-256 is the output's");
  return { frames, last, bytes };
}

/** The JSON Lines file inside an export ZIP (exactly one). */
function jsonlInZip(entries: Map<string, Buffer>): Buffer {
  const names = [...entries.keys()].filter((n) => n.endsWith(".jsonl"));
  assert.equal(names.length, 1, `the ZIP holds one .jsonl file (entries: ${[...entries.keys()].join(", ")})`);
  return entries.get(names[0]!)!;
}

/** Reads a server stream to its end (for calls that should fail). */
async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // nothing to keep
  }
}

/** The messages of an export compared with what ListMessages returns, field by field. */
function assertSameAsListed(exported: ExportedMessage[], listed: Awaited<ReturnType<typeof listAllForward>>, conversationId: string): void {
  assert.deepEqual(
    exported.map((m) => ({ c: m.conversationId || conversationId, seq: m.seq, id: m.id, sender: m.senderId, text: m.text, at: m.createdAtMs, reply: m.replyToSeq })),
    listed.map((m) => ({
      c: conversationId,
      seq: m.seq,
      id: m.id,
      sender: m.senderId,
      text: m.content.case === "text" ? m.content.value : undefined,
      at: m.createdAt ? timestampMs(m.createdAt) : undefined,
      reply: m.replyToSeq,
    })),
    "the export holds every message of the conversation, in seq order, as ListMessages returns it",
  );
}

/** The order of an export's records, e.g. "m×3 o×4" (m = message, o = any other record). */
function recordLayout(records: Record<string, unknown>[]): string {
  const kinds = records.map((r) => (exportedMessages([r]).length === 1 ? "m" : "o")).join("");
  return kinds.replace(/(.)\1*/g, (run, c: string) => `${c}×${run.length} `).trim();
}

describe("jobs on one node", function () {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async function () {
    this.timeout(60_000);
    server = await startOperationsServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });
  after(async () => {
    await server?.stop();
  });

  async function live(userId: string, protocol: (typeof MAIN_PROTOCOLS)[number]): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { label: `${userId}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    it(`exports a conversation's history as JSON Lines for its admin, with progress on WatchJob and on the owner's Subscribe stream (${protocol})`, async () => {
      const [admin, member, third] = (await newUsers(server, 3, "exp")) as [string, string, string];
      const adminClients = server.clientsFor(admin, protocol);
      const memberClients = server.clientsFor(member, protocol);
      const group = await createGroup(adminClients, [member, third]);
      for (let i = 0; i < 30; i++) {
        const who = i % 3 === 2 ? memberClients : adminClients;
        await sendText(who, group.id, i % 5 === 0 ? `line ${i}\nwith "quotes", a \\ and ✓ 🦉` : `message ${i}`);
      }
      await adminClients.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: "a reply" }, replyToSeq: 3n });
      const feed = await live(admin, protocol);
      const memberFeed = await live(member, protocol);

      const job = await startExport(adminClients, conversationExport(group.id), admin);
      const { frames, last, bytes } = await finishedExport(adminClients, job);
      assert.equal(last.progress!.itemsTotal, 31n, "items_total counts the conversation's 31 messages");
      assert.ok(frames.every((f) => f.progress!.itemsTotal === 0n || f.progress!.itemsTotal === 31n), "items_total, once known, stays 31");

      const records = jsonLines(bytes);
      assertSameAsListed(exportedMessages(records), await listAllForward(adminClients, group.id), group.id);

      // A second download from half-way is the file's second half.
      const half = Math.floor(bytes.length / 2);
      assert.deepEqual(await download(adminClients, job.id, BigInt(half)), bytes.subarray(half), "a download resumed at an offset");

      // WatchJob on an ended job: its final state, then the end.
      const again = await watchToEnd(adminClients, job.id);
      assert.equal(again.length, 1, "watching an ended job sends one frame");
      assert.equal(again[0]!.status, JobStatus.SUCCEEDED);

      // The owner's Subscribe stream hears the job move, ending with the succeeded job.
      await feed.waitForEvent((e) => e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id && e.kind.value.job.status === JobStatus.SUCCEEDED,
        "a job_progressed event with the succeeded job");
      const progressed = feed.events.flatMap((e) => (e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id ? [e.kind.value.job] : []));
      for (let i = 1; i < progressed.length; i++) {
        assert.ok(progressed[i]!.progress!.itemsDone >= progressed[i - 1]!.progress!.itemsDone, "job_progressed events never go back");
      }
      assert.equal(progressed.at(-1)!.status, JobStatus.SUCCEEDED, "the last job_progressed event is the end");
      assert.deepEqual(progressed.at(-1)!.output, last.output, "the event carries the output to download");
      // Only the owner hears of the job: by the member's next heartbeat the event would have come.
      await memberFeed.waitFor((f) => (f.case === "heartbeat" ? true : undefined), "a heartbeat", { from: memberFeed.received.length });
      assertNoneArrived(memberFeed, (f) => f.case === "event" && f.value.kind.case === "jobProgressed", "another member gets no job_progressed event");

      const mine = await adminClients.jobs.listJobs({});
      assert.equal(mine.jobs[0]?.id, job.id, "ListJobs lists the job first");
      assert.equal(mine.jobs[0]!.status, JobStatus.SUCCEEDED);
      assert.deepEqual((await memberClients.jobs.listJobs({})).jobs, [], "another user does not see the job");
    });
  }

  it("lays out both exports as the contract states: a header record first; a conversation's messages last, in one run", async () => {
    const [admin, member, third] = (await newUsers(server, 3, "order")) as [string, string, string];
    const c = server.clientsFor(admin, "connect");
    const group = await createGroup(c, [member, third]);
    for (let i = 0; i < 3; i++) await sendText(c, group.id, `ordered ${i}`);
    await c.social.follow({ userId: member });
    const expected = { conversation: { header: "conversation", layout: /^o×\d+ m×\d+$/ }, my_data: { header: "export", layout: /^o×\d+ m×\d+( o×\d+)?$/ } };
    for (const [name, req] of [["conversation", conversationExport(group.id)], ["my_data", myDataExport()]] as const) {
      const { bytes } = await finishedExport(c, await startExport(c, req, admin));
      const records = jsonLines(bytes);
      assert.ok(exportedMessages(records).length >= 3, `the ${name} export has the messages`);
      assert.equal(records[0]!.type, expected[name].header, `the ${name} export starts with its header record`);
      const layout = recordLayout(records);
      assert.match(layout, expected[name].layout, `the ${name} export's records (m = message, o = other): ${layout}`);
    }
  });

  it("lets only the conversation's current admins export it: a promoted member may, a demoted admin and a former member may not", async () => {
    const [admin, member, third] = (await newUsers(server, 3, "admins")) as [string, string, string];
    const A = server.clientsFor(admin, "grpc");
    const M = server.clientsFor(member, "connect");
    const T = server.clientsFor(third, "grpc");
    const group = await createGroup(A, [member, third]);
    await sendText(A, group.id, "for the admins");
    await A.conversations.setMemberRole({ conversationId: group.id, userId: member, role: MemberRole.ADMIN });
    await A.conversations.setMemberRole({ conversationId: group.id, userId: admin, role: MemberRole.MEMBER });
    await T.conversations.removeMember({ conversationId: group.id, userId: third });
    await expectCode(A.jobs.startExport(conversationExport(group.id)), Code.NotFound);
    await expectCode(T.jobs.startExport(conversationExport(group.id)), Code.NotFound);
    assert.deepEqual((await A.jobs.listJobs({})).jobs, [], "no job for the demoted admin");
    assert.deepEqual((await T.jobs.listJobs({})).jobs, [], "no job for the former member");
    const job = await startExport(M, conversationExport(group.id), member);
    const { bytes } = await finishedExport(M, job);
    assert.deepEqual(exportedMessages(jsonLines(bytes)).map((m) => m.text), ["for the admins"]);
  });

  it("writes a conversation export as a ZIP holding the JSON Lines file", async () => {
    const [admin, member, third] = (await newUsers(server, 3, "zip")) as [string, string, string];
    const c = server.clientsFor(admin, "grpc");
    const group = await createGroup(c, [member, third]);
    for (let i = 0; i < 12; i++) await sendText(i % 2 ? server.clientsFor(member) : c, group.id, `zip message ${i}`);
    const job = await startExport(c, conversationExport(group.id, ExportFormat.ZIP), admin);
    const { bytes } = await finishedExport(c, job);
    const records = jsonLines(jsonlInZip(await unzip(bytes)));
    assertSameAsListed(exportedMessages(records), await listAllForward(c, group.id), group.id);
  });

  it("exports all of a user's data, and nothing of anyone else's they may not see", async function () {
    this.timeout(60_000);
    const [s, f, o, x, y, z] = (await newUsers(server, 6, "gdpr")) as [string, string, string, string, string, string];
    const S = server.clientsFor(s, "grpc");
    const F = server.clientsFor(f, "connect");
    const O = server.clientsFor(o, "grpc");
    const X = server.clientsFor(x, "connect");
    const tag = randomBytes(4).toString("hex");
    const mark = (what: string) => `${what}-${tag}`;

    await S.users.updateProfile({ displayName: mark("S display name") });
    // S's messages in three conversations.
    const g1 = await createGroup(S, [f, o], "S's group");
    const direct = await createDirect(S, f);
    const g2 = await createGroup(F, [s, o], "F's group");
    const sent: string[] = [];
    for (const [conv, n] of [[g1.id, 3], [direct.id, 2], [g2.id, 2]] as const) {
      for (let i = 0; i < n; i++) {
        const text = mark(`S says ${i} in ${conv.slice(0, 8)}`);
        await sendText(S, conv, text);
        sent.push(text);
      }
    }
    // A message S deleted and one F deleted are gone for everyone; an edited one is exported as it is now.
    const deleted = await sendText(S, g1.id, mark("S DELETED"));
    await S.messages.deleteMessage({ conversationId: g1.id, seq: deleted.seq });
    const fDeleted = await sendText(F, g1.id, mark("F DELETED"));
    await F.messages.deleteMessage({ conversationId: g1.id, seq: fDeleted.seq });
    const edited = await sendText(S, direct.id, mark("S before the edit"));
    await S.messages.editMessage({ conversationId: direct.id, seq: edited.seq, content: { case: "text", value: mark("S after the edit") } });
    sent.push(mark("S after the edit"));
    const fMessage = await sendText(F, g1.id, mark("F in g1"));
    await S.messages.addReaction({ conversationId: g1.id, seq: fMessage.seq, emoji: "🦔" });
    // S leaves g2; what is said there afterwards is not S's to see.
    await sendText(O, g2.id, mark("O before S left"));
    await S.conversations.removeMember({ conversationId: g2.id, userId: s });
    await sendText(O, g2.id, mark("AFTER S LEFT"));
    // Conversations S was never in.
    const g3 = await createGroup(O, [x, z], "without S");
    const secret = await sendText(X, g3.id, mark("SECRET of X"));
    await O.messages.addReaction({ conversationId: g3.id, seq: secret.seq, emoji: "🐙" });
    const ox = await createDirect(O, x);
    await sendText(O, ox.id, mark("PRIVATE O to X"));
    // Stories and follows.
    const pixel = new Uint8Array(await readFile(PIXEL_PNG));
    const post = async (c: Clients, caption: string, privacy: StoryPrivacy) => {
      const media = await c.media.uploadMedia({ data: pixel });
      return (await c.stories.createStory({ mediaId: media.media!.id, caption, privacy })).story!;
    };
    await post(S, mark("S story"), StoryPrivacy.PUBLIC);
    await post(F, mark("F CLOSE FRIENDS ONLY"), StoryPrivacy.CLOSE_FRIENDS);
    await post(X, mark("X story for followers"), StoryPrivacy.FOLLOWERS);
    await S.social.follow({ userId: y });
    await S.social.follow({ userId: f });
    await X.social.follow({ userId: o });

    const job = await startExport(S, myDataExport(), s);
    const { bytes } = await finishedExport(S, job);
    const records = jsonLines(bytes);

    // All of S's data.
    const mine = exportedMessages(records).filter((m) => m.senderId === s && m.text !== undefined);
    assert.deepEqual(new Set(mine.map((m) => m.text)), new Set(sent), "every message S sent, in every conversation, is in the export (edited ones as they are now)");
    assert.equal(mine.length, sent.length, "each once");
    const has = (needle: string, what: string) => assert.ok(mentions(records, needle), `the export holds ${what} (${needle})`);
    has(mark("S display name"), "S's profile");
    has(mark("S story"), "S's story");
    has("🦔", "S's reaction");
    has(y, "whom S follows");
    // Nothing of anyone else's that S may not see.
    const hasNot = (needle: string, what: string) => assert.ok(!mentions(records, needle), `the export holds nothing of ${what} (${needle})`);
    hasNot(mark("S DELETED"), "a message S deleted");
    hasNot(mark("F DELETED"), "a message F deleted");
    hasNot(mark("AFTER S LEFT"), "a conversation S left, after S left");
    hasNot(mark("SECRET of X"), "a conversation S was never in");
    hasNot(mark("PRIVATE O to X"), "another pair's direct conversation");
    hasNot("🐙", "another user's reaction in a conversation S was never in");
    hasNot(mark("F CLOSE FRIENDS ONLY"), "a story only F's close friends may see");
    hasNot(mark("X story for followers"), "a story of someone S does not follow");
    hasNot(x, "a user S shares nothing with");
    hasNot(z, "another user S shares nothing with");
    hasNot(g3.id, "a conversation S was never in");
    hasNot(ox.id, "another pair's direct conversation");
  });

  it("writes a user's data as a ZIP holding the JSON Lines file and the media it refers to", async () => {
    const [s] = (await newUsers(server, 1, "zipme")) as [string];
    const S = server.clientsFor(s, "connect");
    const pixel = new Uint8Array(await readFile(PIXEL_PNG));
    const media = await S.media.uploadMedia({ data: pixel });
    await S.stories.createStory({ mediaId: media.media!.id, caption: "zip story", privacy: StoryPrivacy.PUBLIC });
    const job = await startExport(S, myDataExport(ExportFormat.ZIP), s);
    const { bytes } = await finishedExport(S, job);
    const entries = await unzip(bytes);
    const records = jsonLines(jsonlInZip(entries));
    assert.ok(mentions(records, "zip story"), "the JSON Lines file holds the story");
    const withPixel = [...entries].filter(([, b]) => b.equals(Buffer.from(pixel)));
    assert.equal(withPixel.length, 1, `the ZIP holds the story's media file once (entries: ${[...entries.keys()].join(", ")})`);
    assert.ok(mentions(records, withPixel[0]![0]) || mentions(records, media.media!.id), "the JSON Lines file refers to the media");
  });

  it("runs a search reindex for an operator as a job with progress and no output", async () => {
    const operator = uniqueId("op");
    const [u, v, w] = (await newUsers(server, 3, "rx")) as [string, string, string];
    const g = await createGroup(server.clientsFor(u), [v, w]);
    for (let i = 0; i < 5; i++) await sendText(server.clientsFor(u), g.id, `reindex me ${i}`);
    const op = server.clientsFor(operator, "grpc", OPERATOR);
    const res = await op.jobs.startReindex({});
    const job = res.job!;
    assert.equal(job.kind, JobKind.SEARCH_REINDEX);
    assert.equal(job.status, JobStatus.QUEUED);
    assert.equal(job.ownerId, operator);
    const frames = await watchToEnd(op, job.id, { timeoutMs: 60_000 });
    const last = assertWatchFrames(frames, job.id);
    assert.equal(last.status, JobStatus.SUCCEEDED, describeJob(last));
    assert.equal(last.output, undefined, "a reindex writes no file");
    assert.equal(last.format, ExportFormat.UNSPECIFIED, "format is unset for a job without a file");
    assert.ok(last.progress!.itemsTotal >= 5n, "items_total counts at least the 5 messages");
    await expectOneOfCodes(drain(op.jobs.downloadJobOutput({ jobId: job.id })), [Code.FailedPrecondition, Code.NotFound]);
    assert.equal((await op.jobs.listJobs({})).jobs[0]?.id, job.id, "the operator's ListJobs lists it");
    const hits = await server.clientsFor(u).search.searchMessages({ query: "reindex" });
    assert.ok(hits.hits.length >= 1, "search still finds the messages after the reindex");
  });

  it("cancels a running export: it ends CANCELLED with no output and stays so", async function () {
    const url = server.env.DATABASE_URL;
    if (!url) this.skip(); // seeding a large conversation needs the real PostgreSQL
    this.timeout(60_000);
    const [admin, member, third] = (await newUsers(server, 3, "cancel")) as [string, string, string];
    const c = server.clientsFor(admin, "connect");
    const group = await createGroup(c, [member, third]);
    await seedMessages(url!, group.id, [admin, member], 100_000);
    const job = await startExport(c, conversationExport(group.id), admin);
    const cancelled = (await c.jobs.cancelJob({ jobId: job.id })).job!;
    assert.equal(cancelled.id, job.id);
    assert.equal(cancelled.status, JobStatus.CANCELLED, `CancelJob returns the job cancelled: ${describeJob(cancelled)}`);
    assert.ok(cancelled.finishedAt, "a cancelled job has finished_at");
    const frames = await watchToEnd(c, job.id);
    assert.equal(assertWatchFrames(frames, job.id).status, JobStatus.CANCELLED);
    await new Promise((r) => setTimeout(r, 2_000));
    const listed = (await c.jobs.listJobs({})).jobs.find((j) => j.id === job.id);
    assert.equal(listed?.status, JobStatus.CANCELLED, `still cancelled 2 s later (${describeJob(listed)})`);
    assert.equal(listed.output, undefined, "no output");
    await expectOneOfCodes(drain(c.jobs.downloadJobOutput({ jobId: job.id })), [Code.FailedPrecondition, Code.NotFound]);
    await expectCode(c.jobs.cancelJob({ jobId: job.id }), Code.FailedPrecondition);
  });

  it("lists the caller's jobs newest first, page by page", async () => {
    const [u] = (await newUsers(server, 1, "pages")) as [string];
    const c = server.clientsFor(u, "grpc");
    const started: string[] = [];
    for (let i = 0; i < 3; i++) {
      started.unshift((await startExport(c, myDataExport(), u)).id);
      await new Promise((r) => setTimeout(r, 5));
    }
    const first = await c.jobs.listJobs({ pageSize: 2 });
    assert.equal(first.jobs.length, 2);
    assert.ok(first.nextPageToken, "a next page");
    const second = await c.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken });
    const all = [...first.jobs, ...second.jobs].map((j) => j.id);
    assert.deepEqual(all, started, "every job once, newest first");
    if (second.nextPageToken) assert.deepEqual((await c.jobs.listJobs({ pageSize: 2, pageToken: second.nextPageToken })).jobs, []);
    for (const id of started) await watchToEnd(c, id);
  });

  for (const protocol of MAIN_PROTOCOLS) {
    it(`answers bad input and wrong callers on every JobService RPC with the right code, writing nothing (${protocol})`, async () => {
      const [admin, member, outsider, third] = (await newUsers(server, 4, "badjob")) as [string, string, string, string];
      const A = server.clientsFor(admin, protocol);
      const M = server.clientsFor(member, protocol);
      const X = server.clientsFor(outsider, protocol);
      const group = await createGroup(A, [member, third]);
      await sendText(A, group.id, "one message");

      // StartExport: bad input, and conversations the caller may not export.
      await expectInvalidArgument(A.jobs.startExport({}), "target", "conversation_id", "my_data");
      await expectInvalidArgument(A.jobs.startExport({ target: { case: "conversationId", value: "not-a-uuid" } }), "conversation_id");
      await expectInvalidArgument(A.jobs.startExport({ target: { case: "conversationId", value: "" } }), "conversation_id");
      await expectInvalidArgument(A.jobs.startExport({ target: { case: "myData", value: false } }), "my_data");
      await expectInvalidArgument(A.jobs.startExport({ ...conversationExport(group.id), format: 99 as ExportFormat }), "format");
      await expectCode(M.jobs.startExport(conversationExport(group.id)), Code.NotFound);
      await expectCode(X.jobs.startExport(conversationExport(group.id)), Code.NotFound);
      await expectCode(X.jobs.startExport(conversationExport(randomUUID())), Code.NotFound);
      // StartReindex: operators only.
      await expectCode(A.jobs.startReindex({}), Code.PermissionDenied);
      await expectCode(A.jobs.startReindex({ restart: true }), Code.PermissionDenied);
      for (const [who, c] of [["admin", A], ["member", M], ["outsider", X]] as const) {
        assert.deepEqual((await c.jobs.listJobs({})).jobs, [], `no job was written for the ${who} by a refused call`);
      }

      // One real job of the admin's, to be refused to others.
      const job = await startExport(A, conversationExport(group.id), admin);
      await finishedExport(A, job);
      const unknown = absentIdLike(job.id);

      await expectInvalidArgument(drain(A.jobs.watchJob({ jobId: "" })), "job_id");
      await expectCode(drain(M.jobs.watchJob({ jobId: job.id })), Code.NotFound);
      await expectCode(drain(A.jobs.watchJob({ jobId: unknown })), Code.NotFound);

      await expectInvalidArgument(A.jobs.cancelJob({ jobId: "" }), "job_id");
      await expectCode(M.jobs.cancelJob({ jobId: job.id }), Code.NotFound);
      await expectCode(A.jobs.cancelJob({ jobId: unknown }), Code.NotFound);
      await expectCode(A.jobs.cancelJob({ jobId: job.id }), Code.FailedPrecondition);

      await expectInvalidArgument(A.jobs.listJobs({ pageSize: -1 }), "page_size");
      await expectInvalidArgument(A.jobs.listJobs({ pageToken: "not a token!" }), "page_token");

      await expectInvalidArgument(drain(A.jobs.downloadJobOutput({ jobId: "" })), "job_id");
      await expectCode(drain(M.jobs.downloadJobOutput({ jobId: job.id })), Code.NotFound);
      await expectCode(drain(A.jobs.downloadJobOutput({ jobId: unknown })), Code.NotFound);
      await expectInvalidArgument(drain(A.jobs.downloadJobOutput({ jobId: job.id, offset: -1n })), "offset");
      await expectOneOfCodes(drain(A.jobs.downloadJobOutput({ jobId: job.id, offset: 1n << 40n })), [Code.InvalidArgument, Code.OutOfRange]);

      const anonymous = server.clientsWithAuthorization(undefined, protocol);
      await expectCode(anonymous.jobs.startExport(myDataExport()), Code.Unauthenticated);
      await expectCode(anonymous.jobs.startReindex({}), Code.Unauthenticated);
      await expectCode(drain(anonymous.jobs.watchJob({ jobId: job.id })), Code.Unauthenticated);
      await expectCode(anonymous.jobs.cancelJob({ jobId: job.id }), Code.Unauthenticated);
      await expectCode(anonymous.jobs.listJobs({}), Code.Unauthenticated);
      await expectCode(drain(anonymous.jobs.downloadJobOutput({ jobId: job.id })), Code.Unauthenticated);

      // Nothing changed: the admin's one job, still succeeded; nobody else has any.
      const remaining = (await A.jobs.listJobs({})).jobs;
      assert.deepEqual(remaining.map((j) => [j.id, statusName(j.status)]), [[job.id, "SUCCEEDED"]], "the admin's only job is unchanged");
      assert.deepEqual((await M.jobs.listJobs({})).jobs, []);
      assert.deepEqual((await X.jobs.listJobs({})).jobs, []);
    });
  }

  describe("from an independent @grpc/grpc-js client", () => {
    const services = loadServices<"JobService">(["parley/v1/job_service.proto"]);
    let client: ServiceClient;
    before(() => {
      client = new services.JobService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    });
    after(() => client?.close());

    it("starts a user data export and lists it; bad input and the operator-only call are refused", async () => {
      const [u] = (await newUsers(server, 1, "grpcjs")) as [string];
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${await server.tokenFor(u)}`);
      await expectStatus(call(client, "StartExport", { format: "EXPORT_FORMAT_JSONL" }, md), grpc.status.INVALID_ARGUMENT);
      await expectStatus(call(client, "StartReindex", {}, md), grpc.status.PERMISSION_DENIED);
      assert.deepEqual((await call(client, "ListJobs", {}, md)).jobs, [], "nothing written by the refused calls");
      const started = await call(client, "StartExport", { my_data: true, format: "EXPORT_FORMAT_JSONL" }, md);
      assert.equal(started.job.kind, "JOB_KIND_USER_DATA_EXPORT");
      assert.equal(started.job.owner_id, u);
      const listed = await call(client, "ListJobs", {}, md);
      assert.deepEqual(listed.jobs.map((j: { id: string }) => j.id), [started.job.id]);
      await watchToEnd(server.clientsFor(u, "grpc"), started.job.id);
    });
  });
});

describe("a 100,000-message export whose node is killed with SIGKILL mid-export", function () {
  const MESSAGES = 100_000;
  let database: FreshDatabase | null = null;
  let prefix = "";
  let removeDirs: (() => Promise<void>)[] = [];
  const nodes: NodeProcess[] = [];
  const feeds: Feed[] = [];
  let nodeA: NodeProcess;
  let nodeB: NodeProcess;

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    database = await createTestDatabase();
    prefix = natsPrefix();
    const jobs = await tempDir("parley-jobs-shared-");
    const data = await tempDir("parley-data-shared-");
    removeDirs = [jobs.remove, data.remove];
    const env = sharedNodeEnv(database!.url, prefix, {
      JOBS_DIR: jobs.dir,
      DATA_DIR: data.dir,
    });
    nodeA = await spawnNode(env, "node A");
    nodes.push(nodeA);
    nodeB = await spawnNode(env, "node B");
    nodes.push(nodeB);
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed") return;
    printNodeOutputs(nodes);
  });
  after(async () => {
    for (const f of feeds) f.close();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
    await Promise.allSettled(removeDirs.map((r) => r()));
  });

  it("finishes on the surviving node with every row exactly once, equal to the database, with progress throughout", async function () {
    this.timeout(90_000);
    const [admin, member, third] = (await newUsers(nodeA, 3, "big")) as [string, string, string];
    const group = await createGroup(nodeA.clientsFor(admin, "grpc"), [member, third]);
    await seedMessages(database!.url, group.id, [admin, member], MESSAGES);

    const onB = nodeB.clientsFor(admin, "connect");
    const feed = await openLiveFeed(nodeB.clientsFor(admin, "grpc"), { label: "admin@B" });
    feeds.push(feed);
    const job = await startExport(nodeA.clientsFor(admin, "grpc"), conversationExport(group.id), admin);

    // Watch from node B; kill node A (where the export was started) on the first frame at 20 % or
    // more that still has work left (chunks of the export are spread over both nodes' workers).
    let killedWhile: Job | undefined;
    const frames = await watchToEnd(onB, job.id, {
      timeoutMs: 75_000,
      onFrame: (f) => {
        const p = f.progress;
        if (killedWhile || f.status !== JobStatus.RUNNING || !p || p.itemsTotal === 0n) return;
        if (p.itemsDone * 5n >= p.itemsTotal && p.itemsDone < p.itemsTotal) {
          killedWhile = f;
          nodeA.child.kill("SIGKILL");
        }
      },
    });
    const last = assertWatchFrames(frames, job.id);
    assert.ok(killedWhile, `node A was killed while the job ran, at 20 % or more with work left (frames: ${frames.map(describeJob).join(" → ")})`);
    const exit = await nodeA.exited;
    assert.equal(exit.signal, "SIGKILL", `node A was killed (exit ${JSON.stringify(exit)})`);
    assert.equal(last.status, JobStatus.SUCCEEDED, `the export finished on node B: ${describeJob(last)}`);
    const afterKill = frames.slice(frames.indexOf(killedWhile) + 1);
    assert.ok(afterKill.length > 0 && afterKill.at(-1)!.progress!.itemsDone > killedWhile.progress!.itemsDone, "progress went on after the kill");
    for (const f of frames) {
      const total = f.progress?.itemsTotal ?? 0n;
      assert.ok(total === 0n || total === BigInt(MESSAGES), `items_total is ${MESSAGES} once known (${describeJob(f)})`);
    }
    assert.equal(last.progress!.itemsDone, BigInt(MESSAGES));
    assert.ok(frames.some((f) => f.progress!.etaSeconds > 0), "a running frame estimates the time left");

    // job_progressed events reached the owner's Subscribe stream on node B, in order, to the end.
    await feed.waitForEvent((e) => e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id && e.kind.value.job.status === JobStatus.SUCCEEDED,
      "job_progressed with the succeeded job", { timeoutMs: 10_000 });
    const progressed = feed.events.flatMap((e) => (e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id ? [e.kind.value.job] : []));
    assert.ok(progressed.some((j) => j.status === JobStatus.RUNNING && j.progress!.itemsDone > 0n && j.progress!.itemsDone < BigInt(MESSAGES)),
      `job_progressed events while it ran (got ${progressed.map(describeJob).join(" → ")})`);
    for (let i = 1; i < progressed.length; i++) {
      assert.ok(progressed[i]!.progress!.itemsDone >= progressed[i - 1]!.progress!.itemsDone, "job_progressed events never go back");
    }

    // The output, downloaded from node B, equals the database row by row.
    const bytes = await download(onB, job.id);
    assert.equal(BigInt(bytes.length), last.output!.sizeBytes);
    assert.equal(sha256Hex(bytes), last.output!.sha256);
    const records = jsonLines(bytes);
    assertSameRows(exportedMessages(records), await storedRows(database!.url, group.id), group.id);
  });
});
