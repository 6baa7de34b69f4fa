/**
 * The jobs' core promise: a 100,000-message conversation export survives the node
 * working on it being killed with SIGKILL. Two nodes (child processes) share PostgreSQL, NATS
 * and JOBS_DIR; both run the job-runner; node A is killed mid-export; node B finishes (taking
 * A's unacked chunks after the ack wait), and the output is checked row by row against the
 * database: every message once, in seq order, nothing missing. Needs DATABASE_URL and NATS.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { JobStatus, type Job } from "../../gen/parley/v1/job_pb.ts";
import { openLiveFeed, type Feed } from "../helpers/feed.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, printNodeOutputs, sharedNodeEnv, spawnNode, type NodeProcess } from "../helpers/realtime.ts";
import { createTestDatabase, newUsers, type FreshDatabase } from "../helpers/test-server.ts";
import { assertWellFormedFrames, download, parseJsonl, sha256 } from "./helpers.ts";
import { seedMessages } from "./seed-messages.ts";

const MESSAGES = 100_000;

describe("a conversation export whose node is killed with SIGKILL", function () {
  let database: FreshDatabase | null = null;
  let prefix = "";
  let jobsDir = "";
  const nodes: NodeProcess[] = [];
  let feed: Feed | null = null;

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    database = await createTestDatabase();
    prefix = natsPrefix();
    jobsDir = await mkdtemp(path.join(os.tmpdir(), "parley-jobs-"));
    const env = sharedNodeEnv(database!.url, prefix, {
      // The shared directory every node writes parts to and reads them from.
      JOBS_DIR: jobsDir,
      // Small chunks, one at a time per node: the export lasts long enough to be cut in the middle.
      JOB_CHUNK_MESSAGES: "1000",
      JOB_RUNNER_CONCURRENCY: "1",
    });
    nodes.push(await spawnNode(env, "node A"), await spawnNode(env, "node B"));
  });
  afterEach(async function () {
    if (this.currentTest?.state !== "failed") return;
    printNodeOutputs(nodes);
    if (!database) return;
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      console.error((await client.query("select id, status, items_done, items_total, error, started_at, updated_at from jobs")).rows);
      console.error((await client.query("select status, count(*), max(attempts) as attempts, count(runner) as leased from job_chunks group by status")).rows);
    } finally {
      await client.end();
    }
  });
  after(async () => {
    feed?.close();
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
    if (jobsDir) await rm(jobsDir, { recursive: true, force: true });
  });

  it("is finished by the other node with every message once, in order, as stored", async function () {
    this.timeout(60_000);
    const [nodeA, nodeB] = nodes as [NodeProcess, NodeProcess];
    const [admin, other, third] = await newUsers(nodeA, 3, "crashexp");
    const group = await createGroup(nodeA.clientsFor(admin!), [other!, third!], "a hundred thousand");
    let seeded = Date.now();
    await seedMessages({ databaseUrl: database!.url, conversationId: group.id, senders: [admin!, other!], count: MESSAGES });
    seeded = Date.now() - seeded;

    const B = nodeB.clientsFor(admin!, "grpc");
    feed = await openLiveFeed(B, { label: "owner@B" });
    const job = (await nodeA.clientsFor(admin!, "connect").jobs.startExport({ target: { case: "conversationId", value: group.id } })).job!;

    // Watch on B (it survives); kill A once the export is under way but far from done.
    const frames: Job[] = [];
    let killedAt: Job | null = null;
    for await (const frame of B.jobs.watchJob({ jobId: job.id }, { timeoutMs: 50_000 })) {
      frames.push(frame.job!);
      const done = frame.job!.progress!.itemsDone;
      if (!killedAt && done > 0n) {
        nodeA.child.kill("SIGKILL");
        killedAt = frame.job!;
      }
    }
    assert.equal((await nodeA.exited).signal, "SIGKILL", "node A was killed");
    assert.ok(killedAt, "node A was killed while the job ran");
    assert.ok(killedAt.progress!.itemsDone < BigInt(MESSAGES), `killed mid-export (at ${killedAt.progress!.itemsDone} of ${MESSAGES})`);
    assertWellFormedFrames(frames);
    const last = frames.at(-1)!;
    assert.equal(last.status, JobStatus.SUCCEEDED, `finished: ${last.error}`);
    assert.equal(last.progress!.itemsDone, BigInt(MESSAGES), "each message counted once");

    // Progress reached the owner's Subscribe stream too, ending with the finished job.
    await feed.waitForEvent((e) => e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id && e.kind.value.job.status === JobStatus.SUCCEEDED, "the finished job's event", { timeoutMs: 10_000 });

    const { data } = await download(B, job.id);
    assert.equal(sha256(data), last.output!.sha256);
    const records = parseJsonl(data);
    const messages = records.filter((r) => r.type === "message");
    assert.equal(records[0]!.type, "conversation");
    assert.equal(records.filter((r) => r.type === "member").length, 3);
    await compareWithDatabase(database!.url, group.id, messages);
    assert.deepEqual(await readdir(path.join(jobsDir, job.id)), ["output"], "the parts are gone, the output stays");
    console.log(`      seeded ${MESSAGES} in ${seeded} ms; killed at ${killedAt.progress!.itemsDone}/${MESSAGES}; ${frames.length} frames`);
  });
});

/** Every stored message, in seq order, against the export's message lines, field by field. */
async function compareWithDatabase(url: string, conversationId: string, lines: readonly Record<string, unknown>[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ seq: string; id: string; sender_id: string; created_at: Date; deleted_at: Date | null; body_text: string | null; envelope_ciphertext: Buffer | null }>(
      "select seq, id, sender_id, created_at, deleted_at, body_text, envelope_ciphertext from messages where conversation_id = $1 order by seq",
      [conversationId],
    );
    const counts = await client.query<{ seq: string; emoji: string; count: string }>("select seq, emoji, count from message_reaction_counts where conversation_id = $1", [conversationId]);
    const reactions = new Map<number, Record<string, number>>();
    for (const c of counts.rows) reactions.set(Number(c.seq), { ...reactions.get(Number(c.seq)), [c.emoji]: Number(c.count) });
    assert.equal(lines.length, rows.length, "as many message lines as stored messages");
    for (const [i, row] of rows.entries()) {
      const line = lines[i]!;
      const where = `line for seq ${row.seq}`;
      assert.equal(line.seq, Number(row.seq), `${where}: seq order, no duplicate, no gap`);
      assert.equal(line.id, row.id, where);
      assert.equal(line.sender_id, row.sender_id, where);
      assert.equal(line.created_at, row.created_at.toISOString(), where);
      assert.equal(line.deleted, row.deleted_at !== null, where);
      assert.equal(line.text, row.body_text ?? undefined, where);
      assert.equal((line.envelope as { ciphertext?: string } | undefined)?.ciphertext, row.envelope_ciphertext?.toString("base64"), where);
      assert.deepEqual(line.reactions, row.deleted_at ? {} : (reactions.get(Number(row.seq)) ?? {}), where);
    }
  } finally {
    await client.end();
  }
}
