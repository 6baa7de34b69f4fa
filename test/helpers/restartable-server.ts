/**
 * Servers that restart on the same data: one database (a fresh PostgreSQL database, or PGlite
 * on disk) that servers started one after another share, and a folder for client stores. A
 * test stops one server and starts the next on the same port with the same secret, so clients
 * reconnect to "the same" server — a real restart, not a mock.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { createTestDatabase, startTestServer, type FreshDatabase, type TestServer } from "./test-server.ts";

export interface RestartableServers {
  /** A folder of this run, for the clients' stores. */
  readonly dir: string;
  /** Starts a server on the shared data. */
  start(): Promise<TestServer>;
  /** Starts a server on the shared data in place of a stopped one: its port and secret. */
  restart(stopped: TestServer): Promise<TestServer>;
  /** Stops every server started and removes the data. */
  close(): Promise<void>;
}

export async function openRestartableServers(prefix: string): Promise<RestartableServers> {
  const database: FreshDatabase | null = await createTestDatabase();
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const servers: TestServer[] = [];
  const start = async (env: Record<string, string> = {}) => {
    const storage = database ? {} : { PGLITE_PATH: path.join(dir, "pglite") };
    const server = await startTestServer({ ...storage, ...env }, database ? { databaseUrl: database.url } : {});
    servers.push(server);
    return server;
  };
  return {
    dir,
    start: () => start(),
    restart: (stopped) => start({ PORT: String(stopped.port), JWT_SECRET: stopped.secret }),
    async close() {
      for (const server of servers) await server.stop();
      await database?.drop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
