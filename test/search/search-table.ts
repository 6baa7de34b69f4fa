/**
 * Direct reads and writes of the PostgreSQL search table (`message_search`), for what no RPC
 * can show: that deleted or replaced text is really gone from it, and wiping it before a
 * rebuild. PostgreSQL mode only: the embedded database lives inside the server process.
 */
import pg from "pg";
import { withDatabase as withDatabaseAt } from "../helpers/event-log-db.ts";
import type { TestServer } from "../helpers/test-server.ts";

function withDatabase<T>(server: TestServer, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const url = server.env.DATABASE_URL;
  if (!url) throw new Error("the search table can only be reached on PostgreSQL (DATABASE_URL)");
  return withDatabaseAt(url, work);
}

/** Rows of the search table whose text (any column) holds the word, case-insensitively. */
export function searchRowsHolding(server: TestServer, word: string): Promise<number> {
  return withDatabase(server, async (client) => {
    const res = await client.query<{ n: number }>(
      "select count(*)::int as n from message_search t where position($1 in lower(t::text)) > 0",
      [word.toLowerCase()],
    );
    return res.rows[0]!.n;
  });
}

/** Empties the search table, as a lost or corrupted index would be. */
export function wipeSearchTable(server: TestServer): Promise<void> {
  return withDatabase(server, async (client) => {
    await client.query("delete from message_search");
  });
}

/** Refreshes PostgreSQL's statistics on the search table, as autovacuum does on its own. */
export function analyzeSearchTable(server: TestServer): Promise<void> {
  return withDatabase(server, async (client) => {
    await client.query("analyze message_search");
  });
}
