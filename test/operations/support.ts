/**
 * What the operations tests (connection registry, jobs) share: a node with a jobs folder of its
 * own, watching a job to its end, downloading its output, reading an export without knowing
 * more of its record layout than the contract says (JSON Lines, messages first), and seeding a
 * large conversation straight into PostgreSQL.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import yauzl from "yauzl";
import { JobStatus, type Job } from "../../gen/parley/v1/job_pb.ts";
import type { Clients, TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";

/** A temporary directory, removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A real-time node whose DATA_DIR and JOBS_DIR are fresh temporary folders, removed on stop(). */
export async function startOperationsServer(overrides: Record<string, string | undefined> = {}): Promise<TestServer> {
  const data = await tempDir("parley-ops-data-");
  const jobs = await tempDir("parley-ops-jobs-");
  let server: TestServer;
  try {
    server = await startRealtimeServer({ DATA_DIR: data.dir, JOBS_DIR: jobs.dir, ...overrides });
  } catch (err) {
    await Promise.all([data.remove(), jobs.remove()]);
    throw err;
  }
  return {
    ...server,
    async stop() {
      try {
        await server.stop();
      } finally {
        await Promise.all([data.remove(), jobs.remove()]);
      }
    },
  };
}

/** The name of a JobStatus value, e.g. "RUNNING". */
export function statusName(status: JobStatus): string {
  return Object.entries(JobStatus).find(([, v]) => v === status)?.[0] ?? String(status);
}

export const ENDED: ReadonlySet<JobStatus> = new Set([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]);

/** A short description of a job for failure messages. */
export function describeJob(job: Job | undefined): string {
  if (!job) return "no job";
  const p = job.progress;
  return `${job.id.slice(0, 8)}:${statusName(job.status)} ${p?.itemsDone ?? 0}/${p?.itemsTotal ?? 0} (${(p?.percent ?? 0).toFixed(1)} %)${job.error ? ` error=${job.error}` : ""}`;
}

export interface WatchOptions {
  /** Called with every frame's job, in order. */
  onFrame?: (job: Job, index: number) => void;
  timeoutMs?: number;
}

/**
 * Reads WatchJob until the server ends it; returns every frame's job. Fails when the stream
 * errors or is still open after the deadline.
 */
export async function watchToEnd(clients: Pick<Clients, "jobs">, jobId: string, options: WatchOptions = {}): Promise<Job[]> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const frames: Job[] = [];
  try {
    for await (const res of clients.jobs.watchJob({ jobId }, { signal: controller.signal, timeoutMs: 0 })) {
      assert.ok(res.job, "every WatchJob frame carries the job");
      frames.push(res.job);
      options.onFrame?.(res.job, frames.length - 1);
    }
  } catch (err) {
    if (controller.signal.aborted) {
      assert.fail(`WatchJob(${jobId}) did not end within ${timeoutMs} ms; last frame: ${describeJob(frames.at(-1))} after ${frames.length} frame(s)`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return frames;
}

/**
 * Checks what every WatchJob stream promises: one job throughout, items_done and percent never
 * going back, the last frame ended, and nothing after it.
 */
export function assertWatchFrames(frames: Job[], jobId: string): Job {
  assert.ok(frames.length > 0, "WatchJob sent at least the job's state now");
  for (const [i, f] of frames.entries()) {
    assert.equal(f.id, jobId, `frame ${i} is of the watched job`);
    if (i === 0) continue;
    const prev = frames[i - 1]!;
    assert.ok((f.progress?.itemsDone ?? 0n) >= (prev.progress?.itemsDone ?? 0n),
      `items_done never goes back: frame ${i - 1} ${describeJob(prev)} → frame ${i} ${describeJob(f)}`);
    assert.ok((f.progress?.percent ?? 0) >= (prev.progress?.percent ?? 0) - 1e-9,
      `percent never goes back: frame ${i - 1} ${describeJob(prev)} → frame ${i} ${describeJob(f)}`);
  }
  for (const f of frames) {
    const p = f.progress;
    if (!p || p.itemsTotal === 0n) continue;
    assert.ok(p.itemsDone <= p.itemsTotal, `items_done is at most items_total (${describeJob(f)})`);
    const expected = (Number(p.itemsDone) / Number(p.itemsTotal)) * 100;
    assert.ok(Math.abs(p.percent - expected) <= 1, `percent is items_done / items_total (${describeJob(f)})`);
    assert.ok(p.etaSeconds >= 0, `eta_seconds is not negative (${describeJob(f)})`);
  }
  const last = frames.at(-1)!;
  assert.ok(ENDED.has(last.status), `the last frame has an ended job, got ${describeJob(last)}`);
  for (const f of frames.slice(0, -1)) assert.ok(!ENDED.has(f.status), `only the last frame is ended (${describeJob(f)})`);
  return last;
}

/** The whole output of a job, checking each chunk's offset and total. */
export async function download(clients: Pick<Clients, "jobs">, jobId: string, offset = 0n): Promise<Buffer> {
  const parts: Buffer[] = [];
  let next = offset;
  let total: bigint | undefined;
  for await (const chunk of clients.jobs.downloadJobOutput({ jobId, offset }, { timeoutMs: 60_000 })) {
    assert.equal(chunk.offset, next, "each chunk starts where the previous one ended");
    assert.ok(chunk.data.length <= 1024 * 1024, `a chunk holds at most 1 MiB (got ${chunk.data.length} bytes)`);
    if (total === undefined) total = chunk.totalBytes;
    assert.equal(chunk.totalBytes, total, "every chunk names the same total_bytes");
    parts.push(Buffer.from(chunk.data));
    next += BigInt(chunk.data.length);
  }
  if (total !== undefined) assert.equal(next, total, "the chunks end at total_bytes");
  return Buffer.concat(parts);
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Every line of a JSON Lines file, parsed (every line must be one JSON object). */
export function jsonLines(bytes: Buffer): Record<string, unknown>[] {
  const text = bytes.toString("utf8");
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.map((line, i) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      assert.fail(`line ${i + 1} of the export is not JSON: ${line.slice(0, 200)}`);
    }
    assert.ok(parsed !== null && typeof parsed === "object" && !Array.isArray(parsed), `line ${i + 1} is a JSON object: ${line.slice(0, 200)}`);
    return parsed as Record<string, unknown>;
  });
}

/** A message as an export writes it, in the fields the tests compare. */
export interface ExportedMessage {
  conversationId: string;
  seq: bigint;
  id: string;
  senderId: string;
  text: string | undefined;
  createdAtMs: number | undefined;
  replyToSeq: bigint | undefined;
}

const DISCRIMINATORS = ["type", "kind", "record", "record_type", "recordType", "@type"];

function pick(o: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) if (o[n] !== undefined && o[n] !== null) return o[n];
  return undefined;
}

/**
 * The message a record holds, or undefined when it is some other record. A record either names
 * its kind ("type": "message", …) and holds the message flat or under "message"/"data", or is a
 * message itself (protobuf JSON, camelCase or snake_case).
 */
export function messageOf(record: Record<string, unknown>): ExportedMessage | undefined {
  const tag = DISCRIMINATORS.map((d) => record[d]).find((v) => typeof v === "string") as string | undefined;
  if (tag !== undefined && !/(^|[._/])messages?$/i.test(tag)) return undefined;
  const nested = pick(record, "message", "data", "value");
  const body = (nested && typeof nested === "object" ? nested : record) as Record<string, unknown>;
  const seq = pick(body, "seq");
  const senderId = pick(body, "sender_id", "senderId", "sender");
  const id = pick(body, "id", "message_id", "messageId");
  if (seq === undefined || senderId === undefined || id === undefined) return undefined;
  const content = pick(body, "content") as Record<string, unknown> | undefined;
  const text = pick(body, "text", "body_text", "bodyText") ?? (content && typeof content === "object" ? pick(content, "text") : undefined);
  const createdAt = pick(body, "created_at", "createdAt");
  const replyTo = pick(body, "reply_to_seq", "replyToSeq");
  return {
    conversationId: String(pick(body, "conversation_id", "conversationId") ?? pick(record, "conversation_id", "conversationId") ?? ""),
    seq: BigInt(seq as string | number),
    id: String(id),
    senderId: String(senderId),
    text: typeof text === "string" ? text : undefined,
    createdAtMs: typeof createdAt === "string" ? Date.parse(createdAt) : typeof createdAt === "number" ? createdAt : undefined,
    replyToSeq: replyTo === undefined ? undefined : BigInt(replyTo as string | number),
  };
}

/** The messages of an export in file order. */
export function exportedMessages(records: Record<string, unknown>[]): ExportedMessage[] {
  const out: ExportedMessage[] = [];
  for (const r of records) {
    const m = messageOf(r);
    if (m) out.push(m);
  }
  return out;
}

/** Whether any string anywhere in the value (keys included) contains the needle. */
export function mentions(value: unknown, needle: string): boolean {
  if (typeof value === "string") return value.includes(needle);
  if (Array.isArray(value)) return value.some((v) => mentions(v, needle));
  if (value && typeof value === "object") return Object.entries(value).some(([k, v]) => k.includes(needle) || mentions(v, needle));
  return false;
}

/** The entries of a ZIP file, by name. */
export function unzip(bytes: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(bytes, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error("not a ZIP"));
      const entries = new Map<string, Buffer>();
      zip.on("error", reject);
      zip.on("end", () => resolve(entries));
      zip.on("entry", (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith("/")) return zip.readEntry();
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(e ?? new Error(`cannot read ${entry.fileName}`));
          const parts: Buffer[] = [];
          stream.on("data", (c: Buffer) => parts.push(c));
          stream.on("error", reject);
          stream.on("end", () => {
            entries.set(entry.fileName, Buffer.concat(parts));
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

/** Runs the work with a client of the PostgreSQL database. */
export async function withDatabase<T>(url: string, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A body of seeded message `g`: some with a line break, quotes, a backslash and non-ASCII text, to exercise escaping. */
export const SEEDED_TEXT_SQL = `'m' || g || CASE WHEN g % 7 = 0 THEN E' line\\nbreak "quoted" \\\\ é ✓ 🦉' ELSE '' END`;

/**
 * Appends `count` messages to the conversation straight in PostgreSQL (far faster than sending
 * them): seq stays gapless after the ones already there, senders alternate between the given
 * members, every 10th replies to the one before, and created_at has millisecond precision.
 */
export async function seedMessages(url: string, conversationId: string, senderIds: readonly string[], count: number): Promise<void> {
  await withDatabase(url, async (c) => {
    await c.query("BEGIN");
    try {
      const { rows } = await c.query<{ last_seq: string }>("SELECT last_seq FROM conversations WHERE id = $1 FOR UPDATE", [conversationId]);
      const base = Number(rows[0]!.last_seq);
      await c.query(
        `INSERT INTO messages (conversation_id, seq, id, sender_id, client_message_id, created_at, reply_to_seq, body_text)
         SELECT $1::uuid, $2::bigint + g, gen_random_uuid(), ($3::text[])[1 + g % array_length($3::text[], 1)],
                'seed-' || g, date_trunc('milliseconds', now() - interval '1 day') + g * interval '1 millisecond',
                CASE WHEN g % 10 = 0 AND $2::bigint + g > 1 THEN $2::bigint + g - 1 END,
                ${SEEDED_TEXT_SQL}
         FROM generate_series(1, $4::bigint) AS g`,
        [conversationId, base, senderIds, count],
      );
      await c.query("UPDATE conversations SET last_seq = $2, last_activity_at = now() WHERE id = $1", [conversationId, base + count]);
      await c.query("COMMIT");
    } catch (err) {
      await c.query("ROLLBACK");
      throw err;
    }
  });
}

/** A message row as the database holds it, in the fields an export is compared on. */
export interface StoredRow {
  seq: bigint;
  id: string;
  senderId: string;
  text: string | null;
  createdAtMs: number;
  replyToSeq: bigint | null;
}

/** Every message row of the conversation, by seq. */
export async function storedRows(url: string, conversationId: string): Promise<StoredRow[]> {
  return withDatabase(url, async (c) => {
    const { rows } = await c.query<{ seq: string; id: string; sender_id: string; body_text: string | null; ms: string; reply_to_seq: string | null }>(
      `SELECT seq, id, sender_id, body_text, floor(extract(epoch FROM created_at) * 1000)::bigint AS ms, reply_to_seq
       FROM messages WHERE conversation_id = $1 ORDER BY seq`,
      [conversationId],
    );
    return rows.map((r) => ({
      seq: BigInt(r.seq),
      id: r.id,
      senderId: r.sender_id,
      text: r.body_text,
      createdAtMs: Number(r.ms),
      replyToSeq: r.reply_to_seq === null ? null : BigInt(r.reply_to_seq),
    }));
  });
}

/**
 * Compares an export's messages with the database row by row: the same count, every seq once
 * in order, and each field equal. Reports the first few differences.
 */
export function assertSameRows(exported: ExportedMessage[], rows: StoredRow[], conversationId: string): void {
  const problems: string[] = [];
  const note = (s: string) => {
    if (problems.length < 10) problems.push(s);
  };
  const seen = new Set<bigint>();
  for (const m of exported) {
    if (seen.has(m.seq)) note(`seq ${m.seq} exported twice`);
    seen.add(m.seq);
  }
  const bySeq = new Map(exported.map((m) => [m.seq, m]));
  for (const r of rows) {
    const m = bySeq.get(r.seq);
    if (!m) {
      note(`seq ${r.seq} missing`);
      continue;
    }
    if (m.conversationId && m.conversationId !== conversationId) note(`seq ${r.seq}: conversation ${m.conversationId}`);
    if (m.id !== r.id) note(`seq ${r.seq}: id ${m.id} ≠ ${r.id}`);
    if (m.senderId !== r.senderId) note(`seq ${r.seq}: sender ${m.senderId} ≠ ${r.senderId}`);
    if ((m.text ?? null) !== r.text) note(`seq ${r.seq}: text ${JSON.stringify(m.text)} ≠ ${JSON.stringify(r.text)}`);
    if (m.createdAtMs === undefined || Math.abs(m.createdAtMs - r.createdAtMs) > 1) note(`seq ${r.seq}: created_at ${m.createdAtMs} ≠ ${r.createdAtMs}`);
    if ((m.replyToSeq ?? null) !== r.replyToSeq) note(`seq ${r.seq}: reply_to_seq ${m.replyToSeq} ≠ ${r.replyToSeq}`);
  }
  const storedSeqs = new Set(rows.map((r) => r.seq));
  const extra = exported.filter((m) => !storedSeqs.has(m.seq)).length;
  if (exported.length !== rows.length) note(`${exported.length} exported, ${rows.length} stored (${extra} not in the database)`);
  const seqs = exported.map((m) => m.seq);
  for (let i = 1; i < seqs.length; i++) {
    if (seqs[i]! <= seqs[i - 1]!) {
      note(`messages not in seq order at line-of-message ${i}: ${seqs[i - 1]} then ${seqs[i]}`);
      break;
    }
  }
  assert.deepEqual(problems, [], `the export equals the database row by row (${exported.length} exported, ${rows.length} stored)`);
}
