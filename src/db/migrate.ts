/**
 * Applies the SQL files in migrations/ in name order, each in its own transaction, and
 * records them in schema_migrations. A session-level advisory lock makes it safe for several
 * nodes to start at once: the first applies, the others wait and then find nothing to do.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.ts";

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../migrations");

/** An arbitrary constant that names Parley's migration lock among advisory locks. */
const MIGRATION_LOCK_ID = 7_462_315_001;

/** Applies pending migrations and returns the names of those it applied. */
export async function migrate(db: Kysely<Database>, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  return db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK_ID})`.execute(conn);
    try {
      await sql`create table if not exists schema_migrations (
        name text primary key,
        applied_at timestamptz not null default now()
      )`.execute(conn);
      const done = await sql<{ name: string }>`select name from schema_migrations`.execute(conn);
      const applied = new Set(done.rows.map((r) => r.name));
      const newlyApplied: string[] = [];
      for (const file of files) {
        if (applied.has(file)) continue;
        const body = await readFile(path.join(dir, file), "utf8");
        await conn.transaction().execute(async (tx) => {
          await sql.raw(body).execute(tx);
          await sql`insert into schema_migrations (name) values (${file})`.execute(tx);
        });
        newlyApplied.push(file);
      }
      return newlyApplied;
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK_ID})`.execute(conn);
    }
  });
}
