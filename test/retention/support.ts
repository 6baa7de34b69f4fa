/**
 * What the retention tests share: a server whose database a test can edit (to make messages
 * old: created_at moved back, as if they had been sent then), and reads of the rows and files
 * the sweeper is meant to delete.
 *
 * With DATABASE_URL the edits and reads go straight to the server's PostgreSQL database while it
 * runs. Embedded (PGlite on disk under the test's data dir), the database lives inside the
 * server process, so an edit stops the server, opens the same files, edits them and starts the
 * server again on the same port with the same secret (clients must be taken afresh).
 */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { createTestDatabase, startTestServer, type Clients, type FreshDatabase, type Protocol, type TestServer } from "../helpers/test-server.ts";

/** Runs one statement, returning its rows. */
export type Query = <R = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>;

export class RetentionServer {
  server: TestServer;
  readonly dataDir: string;
  readonly #database: FreshDatabase | null;
  readonly #env: Record<string, string>;

  private constructor(server: TestServer, dataDir: string, database: FreshDatabase | null, env: Record<string, string>) {
    this.server = server;
    this.dataDir = dataDir;
    this.#database = database;
    this.#env = env;
  }

  /** Starts a server on a database of its own (PostgreSQL, or PGlite on disk) with these settings. */
  static async start(env: Record<string, string> = {}): Promise<RetentionServer> {
    const database = await createTestDatabase();
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-retention-"));
    const fullEnv = { DATA_DIR: dataDir, ...(database ? {} : { PGLITE_PATH: path.join(dataDir, "pglite") }), ...env };
    try {
      const server = await startTestServer(fullEnv, database ? { databaseUrl: database.url } : {});
      return new RetentionServer(server, dataDir, database, fullEnv);
    } catch (error) {
      await database?.drop();
      await rm(dataDir, { recursive: true, force: true });
      throw error;
    }
  }

  get embedded(): boolean {
    return this.#database === null;
  }

  clientsFor(userId: string, protocol: Protocol = "connect"): Clients {
    return this.server.clientsFor(userId, protocol);
  }

  /**
   * Runs `work` against the database. Embedded, the server is stopped meanwhile and started
   * again afterwards (on the same port and secret): take clients afresh after this.
   */
  async edit<T>(work: (query: Query) => Promise<T>): Promise<T> {
    if (this.#database) {
      const client = new pg.Client({ connectionString: this.#database.url });
      await client.connect();
      try {
        return await work(async (text, params) => (await client.query(text, params)).rows);
      } finally {
        await client.end();
      }
    }
    const { port, secret } = this.server;
    await this.server.stop();
    const db = new PGlite(this.#env.PGLITE_PATH!);
    let result: T;
    try {
      result = await work(async <R,>(text: string, params?: unknown[]) => (await db.query<R>(text, params)).rows);
    } finally {
      await db.close();
    }
    this.server = await startTestServer({ ...this.#env, PORT: String(port), JWT_SECRET: secret });
    return result;
  }

  /**
   * Makes messages older by `ageMs`, as if they had been sent then: their rows, their search
   * entries and their events (events stay well inside the replay window).
   */
  async backdate(conversationId: string, seqs: readonly bigint[], ageMs: number): Promise<void> {
    const by = `${ageMs} milliseconds`;
    const s = seqs.map(String);
    await this.edit(async (q) => {
      await q("update messages set created_at = created_at - $3::interval where conversation_id = $1 and seq = any($2::int8[])", [conversationId, s, by]);
      await q("update message_search set created_at = created_at - $3::interval where conversation_id = $1 and seq = any($2::int8[])", [conversationId, s, by]);
      await q("update events set created_at = created_at - $3::interval where conversation_id = $1 and message_seq = any($2::int8[])", [conversationId, s, by]);
    });
  }

  /** Makes media objects older by `ageMs`. */
  async backdateMedia(mediaIds: readonly string[], ageMs: number): Promise<void> {
    await this.edit((q) => q("update media set created_at = created_at - $2::interval where id = any($1::uuid[])", [mediaIds, `${ageMs} milliseconds`]));
  }

  /** Whether the blob store still holds the media object's file. */
  mediaFileExists(mediaId: string): boolean {
    return existsSync(path.join(this.dataDir, "media", mediaId.slice(0, 2), mediaId));
  }

  /** Every file under the blob store. */
  async mediaFiles(): Promise<string[]> {
    const root = path.join(this.dataDir, "media");
    if (!existsSync(root)) return [];
    const out: string[] = [];
    for (const dir of await readdir(root)) out.push(...(await readdir(path.join(root, dir))).filter((f) => !f.endsWith(".tmp")));
    return out;
  }

  async stop(): Promise<void> {
    try {
      await this.server.stop();
    } finally {
      await this.#database?.drop();
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }
}

/** Polls `check` until it returns true, failing after `timeoutMs` with `what`. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`not ${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

export const HOUR_MS = 3600 * 1000;
export const DAY_MS = 24 * HOUR_MS;
