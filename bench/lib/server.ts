/**
 * A Parley node as a child process: the production entry point (src/main.ts) with the
 * environment the bench chooses, on a free 127.0.0.1 port. Ready when its health check
 * says SERVING (the "parley is serving" log line is info level, which LOG_LEVEL=warn hides).
 * Stopped with SIGTERM (a clean drain; --cpu-prof profiles are written then), SIGKILL after
 * a grace period; registered with the cleanup so it never outlives the bench.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { onCleanup } from "./cleanup.ts";
import { createBenchDatabase, type BenchDatabase } from "./database.ts";
import { natsPrefixForRun } from "./nats.ts";
import { BENCH_RATE_LIMITS } from "./rate-limits.ts";
import { freePort, sleep } from "./util.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface StartNodeOptions {
  /** Names the node in messages ("a", "b"). */
  label: string;
  /** Environment beyond the basics (PATH, HOME, HOST, PORT); e.g. DATABASE_URL, NATS_URL, JWT_SECRET. */
  env: Record<string, string>;
  /**
   * The checkout whose src/main.ts runs (default: this one). A bench's `--before DIR` points it
   * at a checkout of the previous release, to measure both on the same data in one run.
   */
  root?: string;
  /** Node.js arguments before the script, e.g. --cpu-prof. */
  nodeArgs?: readonly string[];
  /** Append everything the node prints to this file. */
  logFile?: string;
  startTimeoutMs?: number;
  killGraceMs?: number;
}

export class ParleyNode {
  readonly label: string;
  readonly port: number;
  readonly baseUrl: string;
  readonly child: ChildProcess;
  /** The first and the last lines the node printed. */
  readonly firstLog: string[] = [];
  readonly log: string[] = [];
  logLines = 0;
  /** logLines when stop() was called (what came later was logged while shutting down). */
  linesBeforeStop: number | null = null;
  /** Distinct "msg: err.message" of JSON lines logged while shutting down, with counts. */
  readonly shutdownLog = new Map<string, number>();
  /** Rejects if the node exits before stop() is called. */
  readonly failed: Promise<never>;
  readonly #exited: Promise<void>;
  readonly #killGraceMs: number;
  #stopping = false;
  readonly #unregister: () => Promise<void>;

  private constructor(options: StartNodeOptions, port: number) {
    this.label = options.label;
    this.port = port;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.#killGraceMs = options.killGraceMs ?? 8_000;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? os.tmpdir(),
      HOST: "127.0.0.1",
      PORT: String(port),
      // On, but above anything a bench sends (see rate-limits.ts); a bench's env may override it.
      ...BENCH_RATE_LIMITS,
      ...options.env,
    };
    this.child = spawn(process.execPath, [...(options.nodeArgs ?? []), "src/main.ts"], { cwd: options.root ?? ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    this.#exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
    this.failed = this.#exited.then(() => {
      throw new Error(`node ${this.label} exited (code ${this.child.exitCode}, signal ${this.child.signalCode}):\n${this.log.join("\n")}`);
    });
    this.failed.catch(() => {}); // observed through races
    const logFile = options.logFile ? createWriteStream(options.logFile, { flags: "a" }) : null;
    if (logFile) this.#exited.then(() => logFile.end());
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      if (logFile) stream.on("data", (chunk: string) => logFile.write(chunk));
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop()!;
        for (const line of lines) {
          this.logLines++;
          if (this.linesBeforeStop !== null) {
            let key = line.slice(0, 120);
            try {
              const parsed = JSON.parse(line);
              key = `${parsed.msg ?? ""}${parsed.err?.message ? `: ${parsed.err.message}` : ""}`;
            } catch {
              // not JSON
            }
            this.shutdownLog.set(key, (this.shutdownLog.get(key) ?? 0) + 1);
          }
          if (this.firstLog.length < 10) this.firstLog.push(line);
          this.log.push(line);
          if (this.log.length > 40) this.log.shift();
        }
      });
    }
    this.#unregister = onCleanup(`stop node ${this.label}`, () => this.#stop());
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  static async start(options: StartNodeOptions): Promise<ParleyNode> {
    const node = new ParleyNode(options, await freePort());
    await Promise.race([node.failed, node.#waitServing(options.startTimeoutMs ?? 30_000)]);
    return node;
  }

  async #waitServing(timeoutMs: number): Promise<void> {
    const sessionManager = new Http2SessionManager(this.baseUrl);
    const health = createClient(Health, createGrpcTransport({ baseUrl: this.baseUrl, sessionManager }));
    const deadline = performance.now() + timeoutMs;
    try {
      for (;;) {
        try {
          const res = await health.check({}, { timeoutMs: 1_000 });
          if (res.status === HealthCheckResponse_ServingStatus.SERVING) return;
        } catch {
          // not listening yet
        }
        if (!this.running) return; // failed rejects
        if (performance.now() > deadline) throw new Error(`node ${this.label} did not become healthy in ${timeoutMs} ms:\n${this.log.join("\n")}`);
        await sleep(100);
      }
    } finally {
      sessionManager.abort();
    }
  }

  /** SIGTERM, then SIGKILL after the grace period. Resolves when the process is gone. */
  stop(): Promise<void> {
    return this.#unregister();
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.linesBeforeStop ??= this.logLines;
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), this.#killGraceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  get stopping(): boolean {
    return this.#stopping;
  }
}

/** What a bench run's nodes share: its database, its NATS and prefix, and its token settings. */
export interface BenchRunEnv {
  databaseUrl: string;
  natsUrl: string;
  natsPrefix: string;
  secret: string;
  issuer: string;
  audience: string;
  dataDir: string;
}

/** The environment every bench node starts with (quiet logs, no metrics port); a bench adds its own settings. */
export function benchNodeEnv(run: BenchRunEnv): Record<string, string> {
  return {
    DATABASE_URL: run.databaseUrl,
    NATS_URL: run.natsUrl,
    NATS_PREFIX: run.natsPrefix,
    JWT_SECRET: run.secret,
    JWT_ISSUER: run.issuer,
    JWT_AUDIENCE: run.audience,
    LOG_LEVEL: "warn",
    METRICS_PORT: "off",
    DATA_DIR: run.dataDir,
  };
}

/** What a single-node bench runs on: a fresh database, a NATS prefix, a data dir and the node. */
export interface SingleNodeRun {
  database: BenchDatabase;
  natsPrefix: string;
  node: ParleyNode;
  /** Where the node's output goes. */
  logFile: string;
}

/**
 * Creates the run's database, NATS prefix and data dir (removed at the end by the cleanup) and
 * starts one node on them with the bench's token settings and `env` on top.
 */
export async function startSingleNodeRun(name: string, options: { adminUrl: string; natsUrl: string; secret: string; issuer: string; audience: string; env: Record<string, string> }): Promise<SingleNodeRun> {
  const database = await createBenchDatabase(options.adminUrl);
  const natsPrefix = natsPrefixForRun(options.natsUrl);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `parley-${name}-bench-`));
  onCleanup("remove the data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  const logFile = path.join(os.tmpdir(), `parley-${name}-bench-${natsPrefix}.log`);
  const run = { databaseUrl: database.url, natsUrl: options.natsUrl, natsPrefix, secret: options.secret, issuer: options.issuer, audience: options.audience, dataDir };
  const node = await ParleyNode.start({ label: "a", logFile, env: { ...benchNodeEnv(run), ...options.env } });
  return { database, natsPrefix, node, logFile };
}
