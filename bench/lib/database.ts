/** A fresh PostgreSQL database for one bench run, dropped at cleanup. */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { onCleanup } from "./cleanup.ts";

export interface BenchDatabase {
  name: string;
  /** URL of the new database. */
  url: string;
  /** Drops it now (also done at cleanup). */
  drop(): Promise<void>;
}

/** Creates `parley_bench_<random>` on the server of adminUrl; registers its drop with the cleanup. */
export async function createBenchDatabase(adminUrl: string, name = `parley_bench_${randomBytes(4).toString("hex")}`): Promise<BenchDatabase> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
  const drop = onCleanup(`drop database ${name}`, async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    try {
      await admin.connect();
      await admin.query(`drop database if exists ${name} with (force)`);
    } finally {
      await admin.end().catch(() => {});
    }
  });
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop };
}

/** "PostgreSQL 15.x" of the server, or "PostgreSQL ?". */
export async function postgresVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    return `PostgreSQL ${(await client.query("show server_version")).rows[0].server_version}`;
  } catch {
    return "PostgreSQL ?";
  } finally {
    await client.end().catch(() => {});
  }
}
