/**
 * WAL written for one database between two LSNs, read with pg_waldump from the server's WAL
 * directory (the bench must run on the database machine as root or postgres). The whole
 * server's WAL (pg_current_wal_lsn deltas) counts every tenant's writes; this counts only the
 * records of the database's transactions (their commit records included) and those naming
 * its relations (full-page images among them). A physical replication slot keeps the WAL
 * from being recycled meanwhile (dropped at cleanup). Null when pg_waldump, the WAL or the slot
 * is not available: the caller then reports the server-wide figure.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { onCleanup } from "./cleanup.ts";

const run = promisify(execFile);

export interface WalReader {
  /** WAL bytes of the database's records in [from, to). */
  bytesOf(fromLsn: string, toLsn: string): Promise<number>;
}

export async function openWalReader(adminUrl: string, database: string): Promise<WalReader | null> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  let walDir: string;
  let dbOid: string;
  const slot = `${database}_wal`;
  try {
    walDir = `${(await client.query("show data_directory")).rows[0].data_directory}/pg_wal`;
    dbOid = String((await client.query("select oid from pg_database where datname = $1", [database])).rows[0].oid);
    await client.query("select pg_create_physical_replication_slot($1, true)", [slot]);
  } catch {
    return null;
  } finally {
    await client.end();
  }
  onCleanup(`drop replication slot ${slot}`, async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await admin.query("select pg_drop_replication_slot($1)", [slot]);
    } finally {
      await admin.end();
    }
  });
  let waldump: string;
  try {
    waldump = `${(await run("pg_config", ["--bindir"])).stdout.trim()}/pg_waldump`;
    await run(waldump, ["--version"]);
  } catch {
    return null;
  }
  const ofDatabase = ` rel 1663/${dbOid}/`;
  return {
    async bytesOf(fromLsn, toLsn) {
      const { stdout } = await run(waldump, ["-p", walDir, "-s", fromLsn, "-e", toLsn], { maxBuffer: 1 << 30 });
      const records = stdout.split("\n").flatMap((line) => {
        const m = /len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*(\d+)/.exec(line);
        return m ? [{ bytes: Number(m[1]), tx: m[2]!, ours: line.includes(ofDatabase) }] : [];
      });
      const ourTransactions = new Set(records.filter((r) => r.ours && r.tx !== "0").map((r) => r.tx));
      return records.reduce((sum, r) => sum + (r.ours || ourTransactions.has(r.tx) ? r.bytes : 0), 0);
    },
  };
}
