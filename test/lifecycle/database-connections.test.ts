/**
 * PostgreSQL may end any connection at any time (a restart, a failover, an administrator, an
 * idle timeout in a pooler). The server must log it and carry on with fresh connections, not
 * crash. This is also what happens to every test server when its database is dropped right after
 * stop(): an idle connection still closing gets terminated, and an unhandled pool error then
 * fails whichever test runs at that moment. PostgreSQL mode only (the embedded database has no
 * connections to end).
 */
import assert from "node:assert/strict";
import pg from "pg";
import { newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";

describe("PostgreSQL ending the server's connections", () => {
  let server: TestServer | undefined;
  before(async function () {
    if (!process.env.DATABASE_URL) this.skip();
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  it("keeps serving after its idle connections are terminated", async () => {
    const s = server!;
    const [a, b, c] = await newUsers(s, 3, "pgterm");
    const conv = await createGroup(s.clientsFor(a!), [b!, c!]);
    await sendText(s.clientsFor(a!), conv.id, "before");
    const admin = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await admin.connect();
    try {
      const killed = await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
      );
      assert.ok((killed.rowCount ?? 0) > 0, "the server held connections to terminate");
    } finally {
      await admin.end();
    }
    await new Promise((r) => setTimeout(r, 300));
    const after = await sendText(s.clientsFor(b!, "grpc"), conv.id, "after");
    assert.equal(after.seq, 2n, "a send after the termination is stored");
  });
});
