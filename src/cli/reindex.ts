/**
 * `npm run reindex [-- --restart]`: rebuilds the search index (OpenSearch when OPENSEARCH_URL
 * is set, else PostgreSQL full-text) from the messages in the database, with a progress bar.
 * It runs as a SEARCH_REINDEX job (src/jobs): the command creates the job (or joins the one
 * already queued or running) and hosts a job runner for it, on the in-process bus, or on NATS
 * when NATS_URL is set (where any consumer node may take the work too). The bar follows the
 * job's progress. Interrupted, the next run resumes from the stored position; --restart
 * starts over.
 */
import { setTimeout as delay } from "node:timers/promises";
import { connect as connectNats } from "nats";
import { pino } from "pino";
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "../db/index.ts";
import { createJobs, findActiveOfKind, findJob, JobKindNumber, JobStatusNumber, pendingChunkNumbers, type JobRow } from "../jobs/index.ts";
import { createEventPublisher, createInProcessBus, createNatsBus, createSubjects, openEventLog, provisionNats } from "../log/index.ts";
import { createFileBlobStore } from "../media/index.ts";
import { RetentionPolicy } from "../retention/index.ts";
import { createSearchIndex } from "../search/index.ts";
import { createWorkerRuntime } from "../workers/index.ts";

const BAR_WIDTH = 30;
/** Without a terminal, one progress line this often. */
const LOG_EVERY_MS = 5_000;
/** How often the job row is read for the bar. */
const POLL_MS = 250;
/** Who a reindex started from the command line belongs to. */
const CLI_OWNER = "cli:reindex";

const config = loadConfig();
const logger = pino({ level: config.logLevel, base: { service: "parley-reindex" } }, pino.destination(2));
const database = await openDatabase({ url: config.databaseUrl, embeddedPath: config.embeddedDatabasePath, poolSize: 4 });
const index = createSearchIndex(config.search, database.db);
const subjects = createSubjects(config.feed.natsPrefix);
const nats = config.natsUrl === null ? null : await connectNats({ servers: config.natsUrl.split(","), name: "parley-reindex" });
const started = Date.now();
let lastLine = 0;

function show(job: JobRow, resumed: boolean, final = false): void {
  const copied = Number(job.items_done);
  const total = Number(job.items_total);
  const share = total === 0 ? (final ? 1 : 0) : Math.min(1, copied / total);
  const filled = Math.round(share * BAR_WIDTH);
  const rate = Math.round(copied / Math.max(0.001, (Date.now() - started) / 1000));
  const line = `reindex ${index.backend} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${(share * 100).toFixed(1)}% ${copied.toLocaleString("en")}/${total.toLocaleString("en")} messages${resumed ? " (resumed)" : ""} ${rate.toLocaleString("en")}/s`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}${final ? "\n" : ""}`);
  } else if (final || Date.now() - lastLine >= LOG_EVERY_MS) {
    lastLine = Date.now();
    process.stderr.write(`${line}\n`);
  }
}

const bus = nats ? createNatsBus({ connection: nats, subjects, onError: (error) => logger.warn({ err: error }, "NATS delivery failed") }) : createInProcessBus();
const workers = createWorkerRuntime({ nats, subjects, bus, logger });
let stopJobs = async () => {};
try {
  await migrate(database.db);
  if (nats) {
    await provisionNats(nats, subjects, { retentionMs: config.feed.replayWindowMs, presenceTtlMs: config.feed.presenceTtlMs, replicas: config.natsStreamReplicas });
  }
  const publisher = createEventPublisher(bus, await openEventLog(database.db, config.feed.eventPartitions), logger);
  const jobs = createJobs({
    db: database.db,
    publisher,
    workers,
    subjects,
    config: config.jobs,
    blobs: createFileBlobStore(config.stories.mediaDir),
    retention: new RetentionPolicy(config.retention.messageRetentionSeconds),
    search: index,
    logger,
  });
  stopJobs = () => jobs.stop();
  await jobs.startWorkers({ sweep: false });

  // Join a reindex already queued or running (e.g. an earlier run that was interrupted): its
  // work is republished so this process can take it once the old lease has lapsed.
  const active = await findActiveOfKind(database.db, JobKindNumber.SEARCH_REINDEX);
  const restart = process.argv.includes("--restart");
  let job = active ?? (await jobs.scheduler.start({ kind: JobKindNumber.SEARCH_REINDEX, ownerId: CLI_OWNER, conversationId: null, format: 0 }, jobs.reindex.plan(restart)));
  if (active) await jobs.runner.publishChunks(active.id, await pendingChunkNumbers(database.db, active.id));
  const resumed = active !== undefined;
  while (job.status === JobStatusNumber.QUEUED || job.status === JobStatusNumber.RUNNING) {
    show(job, resumed);
    await delay(POLL_MS);
    job = (await findJob(database.db, job.id))!;
  }
  show(job, resumed, true);
  if (job.status !== JobStatusNumber.SUCCEEDED) {
    console.error(`reindex: job ${job.id} ended ${job.status === JobStatusNumber.CANCELLED ? "cancelled" : `failed: ${job.error}`}`);
    process.exitCode = 1;
  } else {
    console.log(`reindex: done, ${Number(job.items_done).toLocaleString("en")} messages in ${((Date.now() - started) / 1000).toFixed(1)} s (job ${job.id})`);
  }
} finally {
  await stopJobs();
  await workers.close();
  await bus.close();
  await nats?.drain();
  await index.close();
  await database.close();
}
