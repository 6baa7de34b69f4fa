/**
 * Reads every table of a test server's PostgreSQL database looking for a string, the way an
 * attacker with a database dump would: each row as text (so every column of every type), and
 * bytea columns also as the hex of the string's bytes. Proves that deleted content is gone.
 */
import pg from "pg";

/** Where a needle was found. */
export interface Sighting {
  table: string;
  /** The needle's position in the list passed to findInDatabase. */
  needle: number;
  rows: number;
}

/** The hex PostgreSQL prints for the bytes of a value inside a bytea column. */
function byteaHex(needle: string | Uint8Array): string {
  return Buffer.from(needle).toString("hex");
}

/**
 * Every table in the database's non-system schemas that still holds any of the needles (text,
 * or bytes such as a ciphertext), in text columns, bytea columns or anything else a row prints.
 */
export async function findInDatabase(databaseUrl: string, needles: ReadonlyArray<string | Uint8Array>): Promise<Sighting[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const tables = await client.query<{ schema: string; name: string }>(
      `select table_schema as schema, table_name as name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`,
    );
    if (tables.rows.length === 0) throw new Error("the database has no tables: is this the server's database?");
    const found: Sighting[] = [];
    for (const { schema, name } of tables.rows) {
      const table = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`;
      for (const [index, needle] of needles.entries()) {
        const patterns = typeof needle === "string" ? [needle, byteaHex(needle)] : [byteaHex(needle)];
        const res = await client.query<{ n: string }>(
          `select count(*) as n from ${table} t where ${patterns.map((_, i) => `strpos(lower(t::text), lower($${i + 1})) > 0`).join(" or ")}`,
          patterns,
        );
        const rows = Number(res.rows[0]?.n ?? 0);
        if (rows > 0) found.push({ table: name, needle: index, rows });
      }
    }
    return found;
  } finally {
    await client.end();
  }
}
