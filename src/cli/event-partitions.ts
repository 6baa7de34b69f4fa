/**
 * `npm run event-partitions -- N`: changes the event log's partition count. Run it with every
 * node stopped, then start them with EVENT_PARTITIONS=N. The feed's replay window starts empty
 * and clients resync once; messages and everything else stay as they are.
 */
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "../db/index.ts";
import { repartitionEventLog } from "../log/log-layout.ts";
import { MAX_PARTITIONS } from "../log/partitions.ts";

const partitions = Number(process.argv[2]);
if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
  console.error(`usage: npm run event-partitions -- N   (N a whole number from 1 to ${MAX_PARTITIONS})`);
  process.exit(2);
}
const config = loadConfig();
const database = await openDatabase({ url: config.databaseUrl, embeddedPath: config.embeddedDatabasePath, poolSize: 1 });
try {
  await migrate(database.db);
  const layout = await repartitionEventLog(database.db, partitions);
  console.log(`event log: ${layout.partitions} partitions, new log id ${layout.logId}; start every node with EVENT_PARTITIONS=${partitions}`);
} finally {
  await database.close();
}
