/**
 * Where media bytes live. Parley keeps them outside the database behind this interface: files
 * under the data dir by default; an S3-compatible store can implement it later.
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";

export interface BlobStore {
  /** Stores the bytes under the key, replacing whatever was there. */
  put(key: string, data: Uint8Array): Promise<void>;
  /** The bytes under the key, or null when there are none. */
  get(key: string): Promise<Uint8Array | null>;
  /** Removes the key; removing a missing key is not an error (deletes are retried). */
  delete(key: string): Promise<void>;
}

/** Keys must be safe file names: media ids (UUIDs). */
const KEY = /^[0-9a-f-]{8,64}$/;

/** Files under one directory, fanned out by the key's first two characters. */
export function createFileBlobStore(dir: string): BlobStore {
  const fileOf = (key: string) => {
    if (!KEY.test(key)) throw new Error(`invalid blob key "${key}"`);
    return path.join(dir, key.slice(0, 2), key);
  };
  return {
    async put(key, data) {
      const file = fileOf(key);
      await mkdir(path.dirname(file), { recursive: true });
      // Write then rename: a reader never sees half a file, even after a crash mid-write.
      const temporary = `${file}.${randomBytes(4).toString("hex")}.tmp`;
      await writeFile(temporary, data);
      await rename(temporary, file);
    },
    async get(key) {
      try {
        return await readFile(fileOf(key));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw error;
      }
    },
    async delete(key) {
      await rm(fileOf(key), { force: true });
    },
  };
}
