/**
 * Rate limits in the benches. By default every bench node runs with limits on but far above
 * what a bench sends (all of it from 127.0.0.1, often from a few users), so nothing is
 * throttled while every write still pays for its check. `--rate-limits off,memory,redis`
 * (bench:send, bench:feed) runs the whole bench once per mode, back to back, and prints what
 * each mode changed against the first: the cost of rate limiting, measured in one run.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { onCleanup } from "./cleanup.ts";
import { UNREACHABLE_RATE_LIMITS_ENV } from "../../src/ratelimit/index.ts";
import { round } from "./util.ts";

/** Limits no bench reaches: the checks run, nothing is refused. */
export const BENCH_RATE_LIMITS = UNREACHABLE_RATE_LIMITS_ENV;

export const RATE_LIMIT_MODES = ["off", "memory", "redis"] as const;
export type RateLimitMode = (typeof RATE_LIMIT_MODES)[number];

/** The flags a bench takes for this (spread into its parseArgs options). */
export const RATE_LIMIT_FLAGS = {
  "rate-limits": { type: "string" },
  "redis-url": { type: "string", default: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379" },
} as const;

/** Parses --rate-limits: null when not given (one ordinary run). */
export function rateLimitModes(value: string | undefined): RateLimitMode[] | null {
  if (value === undefined || value === "") return null;
  const modes = value.split(",").map((m) => m.trim());
  for (const mode of modes) {
    if (!(RATE_LIMIT_MODES as readonly string[]).includes(mode)) {
      console.error(`bench: --rate-limits takes a comma-separated list of ${RATE_LIMIT_MODES.join(", ")}; got "${mode}"`);
      process.exit(2);
    }
  }
  return modes as RateLimitMode[];
}

/** Server environment for a mode: off, on with buckets in memory, or on with buckets in Redis (a key prefix of the run's own). */
export function rateLimitModeEnv(mode: RateLimitMode, redisUrl: string, runId: string): string[] {
  switch (mode) {
    case "off":
      return ["RATE_LIMITS=off"];
    case "memory":
      return ["RATE_LIMITS=on"];
    case "redis":
      return ["RATE_LIMITS=on", `REDIS_URL=${redisUrl}`, `RATE_LIMIT_KEY_PREFIX=bench:${runId}`];
  }
}

/**
 * Runs `script` once per mode with the same arguments (minus --rate-limits and --json) plus the
 * mode's --server-env, one after the other, then prints the figures that moved. Resolves true
 * when every run succeeded.
 */
export async function runRateLimitModes(scriptUrl: string, modes: readonly RateLimitMode[], redisUrl: string): Promise<boolean> {
  const script = fileURLToPath(scriptUrl);
  const args = withoutFlags(process.argv.slice(2), ["--rate-limits", "--json"]);
  const dir = mkdtempSync(path.join(os.tmpdir(), "parley-rate-limit-modes-"));
  const runId = randomBytes(4).toString("hex");
  const summaries: { mode: RateLimitMode; summary: unknown }[] = [];
  let ok = true;
  for (const mode of modes) {
    const json = path.join(dir, `${mode}.json`);
    const env = rateLimitModeEnv(mode, redisUrl, runId).flatMap((pair) => ["--server-env", pair]);
    console.log(`\n######## rate limits: ${mode}  (${env.filter((a) => a !== "--server-env").join(" ")})`);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [script, ...args, ...env, "--json", json], { stdio: ["ignore", "inherit", "inherit"] });
      const stop = onCleanup(`stop the ${mode} run`, () => child.kill("SIGTERM"));
      child.once("exit", (exitCode) => {
        void stop();
        resolve(exitCode);
      });
    });
    if (code !== 0) ok = false;
    try {
      summaries.push({ mode, summary: JSON.parse(readFileSync(json, "utf8")) });
    } catch {
      console.error(`bench: the ${mode} run left no summary (exit ${code})`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  printComparison(summaries);
  return ok;
}

/** Figures worth comparing between modes (paths in the flattened summary). */
const COMPARED = /(PerSecond|latencyMs\.(p50|p99)|cpuMsPerMessage\.\w+|cpuCores\.(?!of$|idleBeforeRun$|wallSeconds$|cores$)[\w-]+(\.total)?|errors(\.total)?)$/;

function printComparison(summaries: { mode: RateLimitMode; summary: unknown }[]): void {
  if (summaries.length < 2) return;
  const flat = summaries.map((s) => flatten(s.summary));
  const paths = [...flat[0]!.keys()].filter((p) => COMPARED.test(p) && !/(^|\.)(config|target)\./.test(p));
  const width = Math.max(...paths.map((p) => p.length), 10);
  console.log(`\n== rate limits compared (Δ against ${summaries[0]!.mode})`);
  console.log(`   ${"".padEnd(width)}  ${summaries.map((s) => s.mode.padStart(16)).join("")}`);
  for (const p of paths) {
    const base = flat[0]!.get(p)!;
    const cells = flat.map((f, i) => {
      const v = f.get(p);
      if (v === undefined) return "-".padStart(16);
      const delta = i === 0 || base === 0 ? "" : ` (${v >= base ? "+" : ""}${round(((v - base) / base) * 100, 1)}%)`;
      return `${round(v, 3)}${delta}`.padStart(16);
    });
    console.log(`   ${p.padEnd(width)}  ${cells.join("")}`);
  }
}

function flatten(value: unknown, prefix = "", out = new Map<string, number>()): Map<string, number> {
  if (typeof value === "number" && Number.isFinite(value)) out.set(prefix, value);
  else if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

function withoutFlags(argv: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const name = names.find((n) => arg === n || arg.startsWith(`${n}=`));
    if (name === undefined) out.push(arg);
    else if (arg === name) i++;
  }
  return out;
}
