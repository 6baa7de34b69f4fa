/**
 * A job's files under JOBS_DIR/<job id>/: one part per chunk and the assembled output. Every
 * file is written to a temporary name and renamed, so a reader (or the node that takes a chunk
 * over after a crash) never sees half a file, and a repeated write just replaces the part.
 * JOBS_DIR must be shared by every node, as MEDIA_DIR is.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import yazl from "yazl";
import { isUuid } from "../validation.ts";

/** A chunk part, or the temporary it is written to first. */
const PART_FILE = /^part-\d+\.jsonl(\.[0-9a-f]+\.tmp)?$/;

/** A media file to put into a ZIP beside the JSON Lines. */
export interface ZipMedia {
  name: string;
  data: Uint8Array;
}

export interface WrittenOutput {
  size: number;
  sha256: string;
}

export class JobFiles {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  dirOf(jobId: string): string {
    // Ids come from our own rows, but a path is only ever built from a UUID.
    if (!isUuid(jobId)) throw new Error(`invalid job id "${jobId}"`);
    return path.join(this.#dir, jobId);
  }

  partOf(jobId: string, chunkNo: number): string {
    return path.join(this.dirOf(jobId), `part-${String(chunkNo).padStart(6, "0")}.jsonl`);
  }

  outputOf(jobId: string): string {
    return path.join(this.dirOf(jobId), "output");
  }

  /** Writes a chunk's records as JSON Lines, replacing any earlier attempt's part. */
  async writePart(jobId: string, chunkNo: number, records: readonly unknown[]): Promise<void> {
    const file = this.partOf(jobId, chunkNo);
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(temporary, records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    await rename(temporary, file);
  }

  /** The parts in chunk order, as one stream of bytes. */
  #parts(jobId: string, chunks: number): Readable {
    const files = Array.from({ length: chunks }, (_, n) => this.partOf(jobId, n));
    return Readable.from(
      (async function* () {
        for (const file of files) yield await readFile(file);
      })(),
    );
  }

  /** Concatenates the parts into the output (JSON Lines). */
  async assembleJsonl(jobId: string, chunks: number): Promise<WrittenOutput> {
    return this.#writeOutput(jobId, this.#parts(jobId, chunks));
  }

  /**
   * A ZIP of the parts as `jsonlName` plus the media. Entries carry the job's creation time, so
   * a repeated finalize writes the same bytes (and the same sha256).
   */
  async assembleZip(jobId: string, chunks: number, jsonlName: string, media: AsyncIterable<ZipMedia>, mtime: Date): Promise<WrittenOutput> {
    const zip = new yazl.ZipFile();
    zip.addReadStream(this.#parts(jobId, chunks), jsonlName, { mtime, compress: true });
    const adding = (async () => {
      // Media is already compressed: stored as is.
      for await (const item of media) zip.addBuffer(Buffer.from(item.data), item.name, { mtime, compress: false });
      zip.end();
    })();
    const [written] = await Promise.all([this.#writeOutput(jobId, zip.outputStream), adding]);
    return written;
  }

  async #writeOutput(jobId: string, source: NodeJS.ReadableStream): Promise<WrittenOutput> {
    const file = this.outputOf(jobId);
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${randomBytes(4).toString("hex")}.tmp`;
    const hash = createHash("sha256");
    let size = 0;
    await pipeline(
      source,
      async function* (chunks: AsyncIterable<Buffer | string>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(temporary),
    );
    await rename(temporary, file);
    return { size, sha256: hash.digest("hex") };
  }

  async removePart(jobId: string, chunkNo: number): Promise<void> {
    await rm(this.partOf(jobId, chunkNo), { force: true });
  }

  /**
   * Removes the chunk parts (after the output is recorded), and the half-written temporaries of
   * parts whose writer was killed mid-write (its chunk was then done again elsewhere).
   */
  async removeParts(jobId: string): Promise<void> {
    const names = await readdir(this.dirOf(jobId)).catch(() => []);
    await Promise.all(names.filter((name) => PART_FILE.test(name)).map((name) => rm(path.join(this.dirOf(jobId), name), { force: true })));
  }

  /** Removes everything of the job (cancelled, expired, erased). */
  async removeAll(jobId: string): Promise<void> {
    // A chunk still running elsewhere may add a part meanwhile (ENOTEMPTY): rm retries; and
    // that chunk removes the directory itself when its completion finds the job ended.
    await rm(this.dirOf(jobId), { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
  }

  /** The output's size on disk, or null when it is gone. */
  async outputSize(jobId: string): Promise<number | null> {
    try {
      return (await stat(this.outputOf(jobId))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
  }

  /** Reads the output from `offset` in pieces of at most `pieceBytes`. */
  async *readOutput(jobId: string, offset: number, pieceBytes: number): AsyncGenerator<{ data: Uint8Array; offset: number }> {
    const handle = await open(this.outputOf(jobId), "r");
    try {
      let position = offset;
      for (;;) {
        const buffer = Buffer.alloc(pieceBytes);
        const { bytesRead } = await handle.read(buffer, 0, pieceBytes, position);
        if (bytesRead === 0) return;
        yield { data: buffer.subarray(0, bytesRead), offset: position };
        position += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }
}

