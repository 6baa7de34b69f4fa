/**
 * `npm run bench:clamd -- [--sizes 1,10] [--concurrency 1,4] [--seconds 10] [--warmup 2] ...`
 *
 * Malware-scan throughput with ClamAV's clamd, for uploads of each --sizes MiB (valid PNGs whose
 * padding is random bytes, as compressed media is), each at every --concurrency (closed loop:
 * that many scans or uploads in flight). Each cell runs --warmup seconds unrecorded, then
 * --seconds recorded, and reports scans (or uploads) per second, MiB/s and latency.
 *
 *   raw       INSTREAM straight to clamd with Parley's client (src/media/clamd-client.ts).
 *   upload    MediaService.UploadMedia end to end over gRPC against a real Parley node
 *             (src/main.ts as a child process, PostgreSQL and NATS as usual) with CLAMD_URL,
 *             then the same against a node without it: the difference is what scanning costs
 *             an upload. Stored files are deleted between cells (the bench owns MEDIA_DIR).
 *
 * By default clamd is started here (Debian's clamav-daemon, as the tests run it) on a database
 * holding ONE custom signature (EICAR): a tiny database scans much faster than the official
 * ones (~300 MB, millions of signatures), so these figures are an upper bound on clamd's side.
 * Point --clamd-url at a clamd with the real databases (loopback or unix socket only) for
 * production figures.
 *
 * Flags: --scenario all|raw|upload (default all)   --sizes MiB,...   --concurrency N,...
 *        --seconds S   --warmup S   --clamd-url tcp://127.0.0.1:3310 | unix:///path
 *        --database-url URL (default postgres://postgres@127.0.0.1:5432/postgres)
 *        --nats-url URL (default nats://127.0.0.1:4222)   --server-env K=V (repeatable)   --json FILE
 * The last line of stdout is the JSON summary.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { crc32 } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { MediaService } from "../gen/parley/v1/media_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { ClamdClient, formatClamdAddress, parseClamdUrl, type ClamdAddress } from "../src/media/clamd-client.ts";
import { startClamd } from "../test/helpers/clamd.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { grpcConnections, closeConnections } from "./lib/grpc.ts";
import { startSingleNodeRun } from "./lib/server.ts";
import { formatLatency, Samples, type LatencySummary } from "./lib/stats.ts";
import { ErrorTally, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    scenario: { type: "string", default: "all" },
    sizes: { type: "string", default: "1,10" },
    concurrency: { type: "string", default: "1,4" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    "clamd-url": { type: "string" },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}

function numbers(name: string, raw: string, min: number, max: number): number[] {
  const values = raw.split(",").map((v) => Number(v.trim()));
  if (values.length === 0 || values.some((v) => !Number.isFinite(v) || v < min || v > max)) {
    console.error(`bench: --${name} wants numbers from ${min} to ${max}, comma-separated; got "${raw}"`);
    process.exit(2);
  }
  return values;
}

const SCENARIO = flags.scenario;
if (!["all", "raw", "upload"].includes(SCENARIO)) throw new Error("--scenario must be all, raw or upload");
const SIZES_MIB = numbers("sizes", flags.sizes, 0.001, 100);
const CONCURRENCY = numbers("concurrency", flags.concurrency, 1, 64).map(Math.round);
const [SECONDS] = numbers("seconds", flags.seconds, 0.1, 3600) as [number];
const [WARMUP] = numbers("warmup", flags.warmup, 0, 600) as [number];
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);
const EXTERNAL_CLAMD = flags["clamd-url"] ? parseClamdUrl(flags["clamd-url"]) : null;
if (EXTERNAL_CLAMD?.kind === "tcp") requireLocalUrl("clamd-url", flags["clamd-url"]!);

const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const SECRET = randomBytes(32).toString("base64url");
const MIB = 1024 * 1024;
/** A 1×1 PNG; the payloads are it with a private ancillary chunk of random padding. */
const PIXEL_PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=", "base64");

/** A valid PNG of exactly `size` bytes (padding in a chunk decoders skip). */
function pngOfSize(size: number): Buffer {
  const iend = PIXEL_PNG.length - 12;
  const padding = size - PIXEL_PNG.length - 12;
  if (padding < 0) throw new Error(`a PNG cannot be smaller than ${PIXEL_PNG.length + 12} bytes`);
  const typed = Buffer.concat([Buffer.from("prVt", "latin1"), randomBytes(padding)]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(padding);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([PIXEL_PNG.subarray(0, iend), head, typed, crc, PIXEL_PNG.subarray(iend)]);
}

interface Cell {
  sizeMiB: number;
  concurrency: number;
  /** Completed in the recorded window. */
  count: number;
  perSecond: number;
  mibPerSecond: number;
  latencyMs: LatencySummary;
  errors: ReturnType<ErrorTally["toJSON"]>;
}

/**
 * Runs `once` in `concurrency` closed loops: --warmup seconds unrecorded, then --seconds recorded.
 * Calls in flight when the window closes are awaited but not counted.
 */
async function closedLoop(sizeMiB: number, concurrency: number, once: (worker: number) => Promise<void>): Promise<Cell> {
  const samples = new Samples();
  const errors = new ErrorTally();
  const started = performance.now();
  const recordFrom = started + WARMUP * 1000;
  const stopAt = recordFrom + SECONDS * 1000;
  let count = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < stopAt) {
        const t0 = performance.now();
        try {
          await once(worker);
          const t1 = performance.now();
          if (t0 >= recordFrom && t1 <= stopAt) {
            count++;
            samples.add(round(t1 - t0, 2));
          }
        } catch (error) {
          errors.add(error);
          if (errors.total > 20) throw new Error(`too many errors: ${errors.samples.join("; ")}`);
        }
      }
    }),
  );
  const perSecond = count / SECONDS;
  return { sizeMiB, concurrency, count, perSecond: round(perSecond), mibPerSecond: round(perSecond * sizeMiB), latencyMs: samples.summary(), errors: errors.toJSON() };
}

function printCell(label: string, cell: Cell): void {
  console.log(
    `  ${label} ${String(cell.sizeMiB).padStart(3)} MiB × ${String(cell.concurrency).padStart(2)}: ${String(cell.perSecond).padStart(7)}/s  ${String(cell.mibPerSecond).padStart(8)} MiB/s   latency ms ${formatLatency(cell.latencyMs)}${cell.errors.total ? `   errors ${JSON.stringify(cell.errors.byCode)}` : ""}`,
  );
}

async function rawScenario(address: ClamdAddress, payloads: Map<number, Buffer>): Promise<Cell[]> {
  const client = new ClamdClient({ address, connectTimeoutMs: 5_000, scanTimeoutMs: 120_000 });
  const cells: Cell[] = [];
  console.log(`raw INSTREAM to ${formatClamdAddress(address)} (scans/s, MiB/s):`);
  for (const [sizeMiB, payload] of payloads) {
    for (const concurrency of CONCURRENCY) {
      const cell = await closedLoop(sizeMiB, concurrency, async () => {
        const verdict = await client.scan(payload);
        if (!verdict.clean) throw new Error(`the payload was flagged: ${verdict.signature}`);
      });
      printCell("scan", cell);
      cells.push(cell);
    }
  }
  return cells;
}

/** UploadMedia against one node (with or without CLAMD_URL); files deleted after each cell. */
async function uploadScenario(label: string, clamdUrl: string | null, payloads: Map<number, Buffer>): Promise<Cell[]> {
  const mediaDir = mkdtempSync(path.join(os.tmpdir(), "parley-clamd-bench-media-"));
  onCleanup("remove the bench media dir", () => rmSync(mediaDir, { recursive: true, force: true }));
  const largest = Math.max(...[...payloads.values()].map((p) => p.length));
  const { node } = await startSingleNodeRun(`clamd-${label}`, {
    adminUrl: ADMIN_URL,
    natsUrl: NATS_URL,
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    env: {
      ...keyValues(flags["server-env"], "server-env"),
      MEDIA_DIR: mediaDir,
      MAX_MEDIA_BYTES: String(Math.max(10 * MIB, largest)),
      ...(clamdUrl === null ? {} : { CLAMD_URL: clamdUrl }),
    },
  });
  const connections = grpcConnections(node.baseUrl, Math.max(...CONCURRENCY));
  const clients = await Promise.all(
    connections.map(async (c, i) => {
      const token = await mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId: `uploader-${i}`, expiresIn: "2h" });
      return { media: createClient(MediaService, c.transport), options: { headers: { authorization: `Bearer ${token}` }, timeoutMs: 120_000 } };
    }),
  );
  const cells: Cell[] = [];
  console.log(`UploadMedia over gRPC, ${clamdUrl === null ? "WITHOUT scanning" : `scanned by clamd at ${clamdUrl}`} (uploads/s, MiB/s):`);
  try {
    for (const [sizeMiB, payload] of payloads) {
      for (const concurrency of CONCURRENCY) {
        const cell = await Promise.race([
          node.failed,
          closedLoop(sizeMiB, concurrency, async (worker) => {
            const { media, options } = clients[worker]!;
            await media.uploadMedia({ data: payload }, options);
          }),
        ]);
        printCell("upload", cell);
        cells.push(cell);
        await rm(mediaDir, { recursive: true, force: true });
      }
    }
  } finally {
    closeConnections(connections);
    await node.stop();
  }
  return cells;
}

async function main() {
  const payloads = new Map(SIZES_MIB.map((mib) => [mib, pngOfSize(Math.round(mib * MIB))]));
  let address: ClamdAddress;
  if (EXTERNAL_CLAMD) {
    address = EXTERNAL_CLAMD;
    console.log(`bench:clamd against the clamd at ${formatClamdAddress(address)} (its own databases)`);
  } else {
    const clamd = await startClamd({ streamMaxLength: `${Math.ceil(Math.max(...SIZES_MIB)) + 1}M` });
    onCleanup("stop clamd", () => clamd.stop());
    address = clamd.address;
    console.log(`bench:clamd against a clamd started here (pid ${clamd.pid}) with ONE custom signature: real databases (~300 MB) scan slower`);
  }
  console.log(`sizes ${SIZES_MIB.join(", ")} MiB; concurrency ${CONCURRENCY.join(", ")}; ${WARMUP} s warm-up + ${SECONDS} s per cell`);

  const raw = SCENARIO === "upload" ? null : await rawScenario(address, payloads);
  let upload: { scanned: Cell[]; unscanned: Cell[]; scannedShareOfUnscanned: { sizeMiB: number; concurrency: number; ratio: number }[] } | null = null;
  if (SCENARIO !== "raw") {
    const scanned = await uploadScenario("scan", formatClamdAddress(address), payloads);
    const unscanned = await uploadScenario("noscan", null, payloads);
    const ratios = scanned.map((cell, i) => ({ sizeMiB: cell.sizeMiB, concurrency: cell.concurrency, ratio: round(cell.perSecond / Math.max(unscanned[i]!.perSecond, 1e-9), 3) }));
    console.log("uploads/s with scanning ÷ without:");
    for (const r of ratios) console.log(`  ${String(r.sizeMiB).padStart(3)} MiB × ${String(r.concurrency).padStart(2)}: ×${r.ratio}`);
    upload = { scanned, unscanned, scannedShareOfUnscanned: ratios };
  }

  const summary = JSON.stringify({ bench: "clamd", clamd: EXTERNAL_CLAMD ? "external" : "one-signature", seconds: SECONDS, raw, upload });
  if (flags.json) writeFileSync(flags.json, summary);
  console.log(summary);
}

const cells = SIZES_MIB.length * CONCURRENCY.length * (SCENARIO === "all" ? 3 : SCENARIO === "upload" ? 2 : 1);
await runBench(main, 1000 * (300 + cells * (SECONDS + WARMUP + 30)));
