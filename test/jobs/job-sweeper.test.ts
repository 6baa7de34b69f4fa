/**
 * The jobs' sweep (consumer nodes): outputs past JOB_OUTPUT_TTL_HOURS are deleted (the row stays,
 * without output), and the pending work of a job nothing has moved for a minute is published
 * again (its items may have been lost between commit and publish). Runs on the embedded database
 * or a fresh PostgreSQL one, with the in-process work runtime.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { sql } from "kysely";
import { pino } from "pino";
import { migrate, openDatabase, type DatabaseHandle } from "../../src/db/index.ts";
import { newId } from "../../src/ids.ts";
import { createJobs, type Jobs } from "../../src/jobs/index.ts";
import { createEventPublisher, createInProcessBus, createSubjects, openEventLog } from "../../src/log/index.ts";
import { createFileBlobStore } from "../../src/media/index.ts";
import { RetentionPolicy } from "../../src/retention/index.ts";
import { createSearchIndex } from "../../src/search/index.ts";
import { createWorkerRuntime, type WorkerRuntime } from "../../src/workers/index.ts";
import { createTestDatabase, type FreshDatabase } from "../helpers/test-server.ts";

describe("the jobs' sweep", function () {
  this.timeout(30_000);
  let fresh: FreshDatabase | null;
  let database: DatabaseHandle;
  let dir: string;
  let workers: WorkerRuntime;
  let jobs: Jobs;
  const published: string[] = [];

  before(async () => {
    fresh = await createTestDatabase();
    database = await openDatabase({ url: fresh?.url ?? null, embeddedPath: "memory://", poolSize: 4 });
    await migrate(database.db);
    dir = await mkdtemp(path.join(os.tmpdir(), "parley-job-sweep-"));
    const logger = pino({ level: "silent" });
    const subjects = createSubjects("sweeptest");
    const bus = createInProcessBus();
    workers = createWorkerRuntime({ nats: null, subjects, bus, logger });
    // What the sweep publishes, seen by a consumer of job work (no job-runner here, so nothing runs it).
    await workers.startConsumer({
      name: "observer",
      filterSubject: subjects.allJobWork,
      decode: (data) => Buffer.from(data).toString(),
      handle: async (batch) => batch.map((d) => (published.push(`${d.subject.split(".").at(-1)} ${d.value}`), "done" as const)),
    });
    jobs = createJobs({
      db: database.db,
      publisher: createEventPublisher(bus, await openEventLog(database.db, 1), logger),
      workers,
      subjects,
      config: { dir, outputTtlMs: 3600_000, chunkMessages: 5000, sweepIntervalMs: 3600_000, concurrency: 1 },
      blobs: createFileBlobStore(path.join(dir, "media")),
      retention: new RetentionPolicy(null),
      search: createSearchIndex({ opensearchUrl: null, opensearchIndex: "x" }, database.db),
      logger,
    });
  });
  after(async () => {
    await workers?.close();
    await database?.close();
    await fresh?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function insertJob(values: { status: number; expiresAt?: string; updatedAgoSeconds?: number; chunks?: number[] }): Promise<string> {
    const id = newId();
    await sql`insert into jobs (id, kind, owner_id, status, output_name, output_type, output_size, output_sha256, expires_at, updated_at)
      values (${id}, 2, 'sweeper', ${values.status}, 'out.jsonl', 'application/x-ndjson', 3, 'abc', ${values.expiresAt ?? null}::timestamptz,
        now() - ${values.updatedAgoSeconds ?? 0} * interval '1 second')`.execute(database.db);
    for (const [n, status] of (values.chunks ?? []).entries()) {
      await sql`insert into job_chunks (job_id, chunk_no, range, status) values (${id}, ${n}, '{}', ${status})`.execute(database.db);
    }
    await mkdir(path.join(dir, id), { recursive: true });
    await writeFile(path.join(dir, id, "output"), "x\n\n");
    return id;
  }

  it("deletes outputs past their expiry and keeps the rows; leaves the others", async () => {
    const expired = await insertJob({ status: 3, expiresAt: new Date(Date.now() - 1000).toISOString() });
    const kept = await insertJob({ status: 3, expiresAt: new Date(Date.now() + 3600_000).toISOString() });
    await jobs.sweep();
    assert.equal(existsSync(path.join(dir, expired)), false, "the expired output is gone");
    assert.equal(existsSync(path.join(dir, kept, "output")), true, "an unexpired output stays");
    const rows = await sql<{ id: string; output_name: string | null; expires_at: Date | null }>`select id, output_name, expires_at from jobs where id in (${expired}, ${kept})`.execute(database.db);
    const byId = new Map(rows.rows.map((r) => [r.id, r]));
    assert.equal(byId.get(expired)!.output_name, null, "the row stays, without output");
    assert.equal(byId.get(kept)!.output_name, "out.jsonl");
  });

  it("republishes the pending chunks of a job quiet for a minute, and the finalize of one with none pending", async () => {
    const stalled = await insertJob({ status: 2, updatedAgoSeconds: 120, chunks: [2, 1, 1] });
    const finished = await insertJob({ status: 2, updatedAgoSeconds: 120, chunks: [2, 2] });
    const busy = await insertJob({ status: 2, updatedAgoSeconds: 5, chunks: [1] });
    published.length = 0;
    await jobs.sweep();
    await workers.close(); // waits for the observer to see what was published
    const of = (id: string) => published.filter((p) => p.includes(id)).sort();
    assert.deepEqual(of(stalled).map((p) => p.split(" ")[0]), ["chunk", "chunk"]);
    assert.deepEqual(of(stalled).map((p) => (JSON.parse(p.split(" ")[1]!) as { chunkNo: number }).chunkNo).sort(), [1, 2]);
    assert.deepEqual(of(finished).map((p) => p.split(" ")[0]), ["finalize"]);
    assert.deepEqual(of(busy), [], "a job that moved recently is left alone");
  });
});
