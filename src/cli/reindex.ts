/**
 * `npm run reindex [-- --restart]`: rebuilds the search index (OpenSearch when OPENSEARCH_URL
 * is set, else PostgreSQL full-text) from the messages in the database, with a progress bar.
 * Interrupted, it resumes from its stored position the next time; --restart starts over.
 */
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "../db/index.ts";
import { createSearchIndex } from "../search/index.ts";
import { reindex, type ReindexProgress } from "../search/reindex.ts";

const BAR_WIDTH = 30;
/** Without a terminal, one progress line this often. */
const LOG_EVERY_MS = 5_000;

const config = loadConfig();
const database = await openDatabase({ url: config.databaseUrl, embeddedPath: config.embeddedDatabasePath, poolSize: 2 });
const index = createSearchIndex(config.search, database.db);
const started = Date.now();
let lastLine = 0;

function show(progress: ReindexProgress, final = false): void {
  const share = progress.total === 0 ? 1 : Math.min(1, progress.copied / progress.total);
  const filled = Math.round(share * BAR_WIDTH);
  const rate = Math.round(progress.copied / Math.max(0.001, (Date.now() - started) / 1000));
  const line = `reindex ${index.backend} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${(share * 100).toFixed(1)}% ${progress.copied.toLocaleString("en")}/${progress.total.toLocaleString("en")} messages${progress.resumed ? " (resumed)" : ""} ${rate.toLocaleString("en")}/s`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}${final ? "\n" : ""}`);
  } else if (final || Date.now() - lastLine >= LOG_EVERY_MS) {
    lastLine = Date.now();
    process.stderr.write(`${line}\n`);
  }
}

try {
  await migrate(database.db);
  const result = await reindex({ db: database.db, index, restart: process.argv.includes("--restart"), onProgress: (p) => show(p) });
  show(result, true);
  console.log(`reindex: done, ${result.copied.toLocaleString("en")} messages in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await index.close();
  await database.close();
}
