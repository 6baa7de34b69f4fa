/** `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded database). */
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "../db/index.ts";

const config = loadConfig();
const database = await openDatabase({ url: config.databaseUrl, embeddedPath: config.embeddedDatabasePath, poolSize: 1 });
try {
  const applied = await migrate(database.db);
  console.log(applied.length === 0 ? "migrations: up to date" : `migrations: applied ${applied.join(", ")}`);
} finally {
  await database.close();
}
