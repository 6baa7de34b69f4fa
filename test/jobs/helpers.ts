/** Calls the jobs tests share: watch a job to its end, download its output, read JSON Lines and ZIPs. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import yauzl from "yauzl";
import { JobStatus, type Job } from "../../gen/parley/v1/job_pb.ts";
import type { Clients } from "../helpers/test-server.ts";

/** Every WatchJob frame until the stream ends (it ends after the terminal frame). */
export async function watchToEnd(clients: Clients, jobId: string, timeoutMs = 30_000): Promise<Job[]> {
  const frames: Job[] = [];
  // A stream outlives the clients' default 10 s call deadline.
  for await (const frame of clients.jobs.watchJob({ jobId }, { timeoutMs })) frames.push(frame.job!);
  return frames;
}

/** Progress never goes back, and the stream ends with exactly one terminal frame. */
export function assertWellFormedFrames(frames: readonly Job[]): void {
  assert.ok(frames.length > 0, "at least one frame");
  for (let i = 1; i < frames.length; i++) {
    assert.ok(frames[i]!.progress!.itemsDone >= frames[i - 1]!.progress!.itemsDone, `items_done never goes back (frame ${i})`);
    assert.ok(frames[i]!.progress!.percent >= frames[i - 1]!.progress!.percent - 1e-9 || frames[i]!.status === JobStatus.SUCCEEDED, `percent never goes back (frame ${i})`);
  }
  const terminal = frames.filter((f) => f.status >= JobStatus.SUCCEEDED);
  assert.equal(terminal.length, 1, "exactly one terminal frame");
  assert.equal(terminal[0], frames.at(-1), "the terminal frame is the last");
}

/** The whole output from `offset`, checking the frames' offsets and total. */
export async function download(clients: Clients, jobId: string, offset = 0n): Promise<{ data: Buffer; total: bigint; frames: number }> {
  const parts: Buffer[] = [];
  let expected = offset;
  let total = -1n;
  let frames = 0;
  for await (const piece of clients.jobs.downloadJobOutput({ jobId, offset })) {
    frames++;
    assert.equal(piece.offset, expected, "frames follow each other");
    assert.ok(piece.data.length <= 1024 * 1024, "at most 1 MiB a frame");
    expected += BigInt(piece.data.length);
    total = piece.totalBytes;
    parts.push(Buffer.from(piece.data));
  }
  return { data: Buffer.concat(parts), total, frames };
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export type JsonRecord = Record<string, unknown> & { type: string };

export function parseJsonl(data: Buffer | string): JsonRecord[] {
  const text = data.toString();
  assert.ok(text === "" || text.endsWith("\n"), "every line ends with a newline");
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as JsonRecord);
}

/** The entries of a ZIP, by name. */
export async function unzip(data: Buffer): Promise<Map<string, Buffer>> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => yauzl.fromBuffer(data, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z))));
  const entries = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    zip.on("entry", (entry: yauzl.Entry) => {
      zip.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          entries.set(entry.fileName, Buffer.concat(chunks));
          zip.readEntry();
        });
        stream.on("error", reject);
      });
    });
    zip.on("end", resolve);
    zip.on("error", reject);
    zip.readEntry();
  });
  return entries;
}
