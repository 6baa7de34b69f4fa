/**
 * `npm run bench:export -- [--messages 1000000] [--formats jsonl,zip] [--runs 1] ...`
 *
 * Export throughput: one Parley node (src/main.ts as a child process) on a fresh
 * database and NATS prefix (removed at the end). A group conversation is seeded with
 * --messages messages straight into PostgreSQL (the same seeder as the SIGKILL test: text,
 * a few encrypted, deleted and reacted ones), then exported once per format per run, back to
 * back, with the WatchJob progress stream open throughout. Reported per export: messages/s
 * (messages / time from StartExport to the terminal frame), frames seen, output size, the
 * node's resident memory peak while exporting (sampled every 100 ms from /proc), and the
 * download rate of the output (DownloadJobOutput, checked against its sha256).
 *
 * Flags: --messages N   --formats jsonl,zip   --runs N   --no-download
 *        --database-url URL (default postgres://postgres@127.0.0.1:5432/postgres)
 *        --nats-url URL (default nats://127.0.0.1:4222)   --server-env K=V (repeatable)   --json FILE
 * The last line of stdout is the JSON summary.
 */
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { ConversationType } from "../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import { ExportFormat, JobStatus } from "../gen/parley/v1/job_pb.ts";
import { JobService } from "../gen/parley/v1/job_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { seedMessages } from "../test/jobs/seed-messages.ts";
import { runBench } from "./lib/cleanup.ts";
import { postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { peakRssKiB, rssKiB } from "./lib/proc.ts";
import { startSingleNodeRun } from "./lib/server.ts";
import { intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    messages: { type: "string", default: "1000000" },
    formats: { type: "string", default: "jsonl,zip" },
    runs: { type: "string", default: "1" },
    "no-download": { type: "boolean", default: false },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}
const MESSAGES = intFlag("messages", flags.messages, 1, 10_000_000);
const RUNS = intFlag("runs", flags.runs, 1, 100);
const FORMATS = flags.formats.split(",").map((f) => {
  if (f === "jsonl") return ExportFormat.JSONL;
  if (f === "zip") return ExportFormat.ZIP;
  throw new Error("--formats is a list of jsonl and zip");
});
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);
const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const SECRET = randomBytes(32).toString("base64url");

interface ExportResult {
  format: string;
  run: number;
  seconds: number;
  messagesPerSecond: number;
  frames: number;
  outputBytes: number;
  peakRssMiB: number;
  downloadMiBPerSecond: number | null;
}

async function main(): Promise<void> {
  const serverEnv = keyValues(flags["server-env"], "server-env");
  const run = await startSingleNodeRun("export", { adminUrl: ADMIN_URL, natsUrl: NATS_URL, secret: SECRET, issuer: ISSUER, audience: AUDIENCE, env: serverEnv });
  const pid = run.node.child.pid!;
  const db = new pg.Client({ connectionString: run.database.url });
  await db.connect();
  await db.query("insert into users (id) values ('owner'), ('m1'), ('m2')");
  await db.end();
  const { transport } = grpcConnection(run.node.baseUrl);
  const token = await mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId: "owner", expiresIn: "6h" });
  const options = { headers: { authorization: `Bearer ${token}` } };
  const conversations = createClient(ConversationService, transport);
  const jobs = createClient(JobService, transport);
  const group = (await conversations.createConversation({ type: ConversationType.GROUP, memberIds: ["m1", "m2"], name: "bench" }, options)).conversation!;
  const seedStart = performance.now();
  await seedMessages({ databaseUrl: run.database.url, conversationId: group.id, senders: ["owner", "m1"], count: MESSAGES });
  console.log(`seeded ${MESSAGES.toLocaleString("en")} messages in ${round((performance.now() - seedStart) / 1000, 1)} s`);

  const idleRssMiB = round((rssKiB(pid) ?? 0) / 1024, 1);
  console.log(`node RSS before the first export: ${idleRssMiB} MiB`);
  const results: ExportResult[] = [];
  for (let r = 1; r <= RUNS; r++) {
    for (const format of FORMATS) {
      const name = format === ExportFormat.ZIP ? "zip" : "jsonl";
      let peak = rssKiB(pid) ?? 0;
      const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid) ?? 0)), 100);
      const started = performance.now();
      const job = (await jobs.startExport({ target: { case: "conversationId", value: group.id }, format }, options)).job!;
      let frames = 0;
      let last = job;
      for await (const frame of jobs.watchJob({ jobId: job.id }, { ...options, timeoutMs: 0 })) {
        frames++;
        last = frame.job!;
      }
      const seconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      if (last.status !== JobStatus.SUCCEEDED) throw new Error(`the ${name} export ended with status ${last.status}: ${last.error}`);
      let downloadRate: number | null = null;
      if (!flags["no-download"]) {
        const hash = createHash("sha256");
        const t0 = performance.now();
        for await (const piece of jobs.downloadJobOutput({ jobId: job.id }, { ...options, timeoutMs: 0 })) hash.update(piece.data);
        if (hash.digest("hex") !== last.output!.sha256) throw new Error("the download does not match its sha256");
        downloadRate = round(Number(last.output!.sizeBytes) / 1024 / 1024 / ((performance.now() - t0) / 1000), 1);
      }
      const result: ExportResult = {
        format: name,
        run: r,
        seconds: round(seconds, 2),
        messagesPerSecond: Math.round(MESSAGES / seconds),
        frames,
        outputBytes: Number(last.output!.sizeBytes),
        peakRssMiB: round(peak / 1024, 1),
        downloadMiBPerSecond: downloadRate,
      };
      results.push(result);
      console.log(
        `run ${r} ${name}: ${result.messagesPerSecond.toLocaleString("en")} messages/s (${result.seconds} s), ${frames} progress frames, ` +
          `${round(result.outputBytes / 1024 / 1024, 1)} MiB, node RSS peak ${result.peakRssMiB} MiB${downloadRate === null ? "" : `, download ${downloadRate} MiB/s`}`,
      );
    }
  }
  const summary = {
    bench: "export",
    messages: MESSAGES,
    postgres: await postgresVersion(ADMIN_URL),
    serverEnv,
    idleRssMiB,
    nodePeakRssMiB: round((peakRssKiB(pid) ?? 0) / 1024, 1),
    results,
  };
  if (flags.json) writeFileSync(flags.json, JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
}

await runBench(main, 3_600_000);
