/**
 * `npm run analytics:rebuild`: recomputes every analytics rollup from the raw tables in one
 * transaction and sets the consumer's watermarks to the event log heads of that snapshot, so
 * a running consumer continues exactly after it (RebuildAnalytics does the same over the API).
 */
import { rebuildAnalytics } from "../analytics/index.ts";
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "../db/index.ts";
import { openEventLog } from "../log/index.ts";

const config = loadConfig();
const database = await openDatabase({ url: config.databaseUrl, embeddedPath: config.embeddedDatabasePath, poolSize: 2 });
try {
  await migrate(database.db);
  const log = await openEventLog(database.db, config.feed.eventPartitions);
  const started = Date.now();
  const { hourlyRows } = await rebuildAnalytics(database.db, log);
  console.log(`analytics:rebuild: ${hourlyRows.toLocaleString("en")} hourly rows in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await database.close();
}
