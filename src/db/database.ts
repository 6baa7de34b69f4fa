/**
 * Opens the database: the PostgreSQL server at DATABASE_URL, or embedded PGlite. The same
 * Kysely handle and the same repositories run on both.
 */
import { mkdir } from "node:fs/promises";
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { createPgliteDialect } from "./pglite-dialect.ts";
import { preparingPool } from "./prepared-statements.ts";
import type { Database } from "./schema.ts";

export interface DatabaseOptions {
  /** PostgreSQL URL, or null for embedded PGlite. */
  url: string | null;
  /** PGlite data directory, or "memory://" to keep it in RAM. */
  embeddedPath: string;
  poolSize: number;
  /** Send statements marked with `preparedSql` as named prepared statements (PostgreSQL only; default off). */
  preparedStatements?: boolean;
  /**
   * Told when PostgreSQL ends a pooled connection (restart, failover, pg_terminate_backend, a
   * pooler's idle timeout). The pool opens a new one on next use; the error only needs
   * reporting (left unhandled, it would end the process).
   */
  onConnectionError?: (error: Error) => void;
}

/** A Kysely handle plus what was needed to open it. */
export interface DatabaseHandle {
  db: Kysely<Database>;
  embedded: boolean;
  close(): Promise<void>;
}

const INT8_OID = 20;

export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.url === null) return openEmbedded(options.embeddedPath);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    // int8 stays a string: a JavaScript number would silently lose precision.
    types: { getTypeParser: (oid, format) => (oid === INT8_OID ? (v: string) => v : pg.types.getTypeParser(oid, format)) },
  });
  // A connection the server ends emits 'error' on its client whether it is idle or checked out
  // (a checked-out client has no pool listener, and nobody else listens): report it once, here.
  // The query in flight, if any, fails on its own; the pool replaces the connection.
  pool.on("connect", (client) => client.on("error", (error) => options.onConnectionError?.(error)));
  // The pool re-emits idle clients' errors, already reported above.
  pool.on("error", () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: options.preparedStatements ? preparingPool(pool) : pool }) });
  return { db, embedded: false, close: () => db.destroy() };
}

async function openEmbedded(dataDir: string): Promise<DatabaseHandle> {
  if (!dataDir.startsWith("memory://")) await mkdir(dataDir, { recursive: true });
  const pglite = new PGlite({ dataDir, parsers: { [pgliteTypes.INT8]: (v: string) => v } });
  const db = new Kysely<Database>({ dialect: createPgliteDialect(pglite) });
  return { db, embedded: true, close: () => db.destroy() };
}
