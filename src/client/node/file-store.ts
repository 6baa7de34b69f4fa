/**
 * A ClientStore on a directory, for Node apps and the CLI: one file per key, written to a
 * temporary file, flushed and renamed over the old one, so a crash leaves either the old value
 * or the new one and never half of either (the outbox and device keys depend on that).
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import * as path from "node:path";
import type { ClientStore } from "../storage.ts";

/** Marks files being written; never a stored key's file name (encoded names hold no "."). */
const TEMP_MARK = ".tmp-";

export class FileStore implements ClientStore {
  readonly #dir: string;
  #ready: Promise<unknown> | undefined;

  /** `dir` is created on first use (with parents). */
  constructor(dir: string) {
    this.#dir = dir;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(await readFile(this.#file(key)));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.#ensureDir();
    const target = this.#file(key);
    const temp = `${target}${TEMP_MARK}${randomUUID()}`;
    const handle = await open(temp, "w", 0o600);
    try {
      await handle.writeFile(value);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    await this.#syncDir();
  }

  async delete(key: string): Promise<void> {
    await rm(this.#file(key), { force: true });
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const keys = names.filter((n) => !n.includes(".")).map(decodeKey).filter((k) => k.startsWith(prefix)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: Array<[string, Uint8Array]> = [];
    for (const key of keys) {
      const value = await this.get(key);
      if (value) out.push([key, value]); // deleted between readdir and read: skip
    }
    return out;
  }

  #file(key: string): string {
    return path.join(this.#dir, encodeKey(key));
  }

  #ensureDir(): Promise<unknown> {
    return (this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }));
  }

  /** Makes the rename itself durable (a no-op where directories cannot be opened, e.g. Windows). */
  async #syncDir(): Promise<void> {
    try {
      const dir = await open(this.#dir, "r");
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch {
      // Best effort: the file's own content was already flushed.
    }
  }
}

/** One flat file name per key: "/" and "." (and anything unsafe) percent-encoded. */
function encodeKey(key: string): string {
  return encodeURIComponent(key).replace(/[.!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
}

function decodeKey(name: string): string {
  return decodeURIComponent(name);
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === "ENOENT";
}
