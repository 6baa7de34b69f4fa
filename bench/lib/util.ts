/** Small helpers shared by the benches. */
import { readFileSync } from "node:fs";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Runs fn over items with at most `limit` at once. */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The gRPC status name of an error ("DEADLINE_EXCEEDED" style, as Connect spells it). */
export function codeName(error: unknown): string {
  const connectError = ConnectError.from(error);
  return Code[connectError.code] ?? String(connectError.code);
}

/** Counts errors by code and keeps the first message of each code. */
export class ErrorTally {
  readonly byCode = new Map<string, number>();
  readonly firstByCode = new Map<string, string>();
  add(error: unknown, what = ""): void {
    const code = codeName(error);
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    if (!this.firstByCode.has(code)) this.firstByCode.set(code, `${what}${what ? " " : ""}${code}: ${(error as Error).message}`);
  }
  get total(): number {
    let n = 0;
    for (const v of this.byCode.values()) n += v;
    return n;
  }
  get samples(): string[] {
    return [...this.firstByCode.values()];
  }
  toJSON() {
    return { total: this.total, byCode: Object.fromEntries(this.byCode), samples: this.samples };
  }
}

/** Parses a whole-number flag or exits with a message naming it. */
export function intFlag(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`bench: --${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    process.exit(2);
  }
  return n;
}

/** Prints the first /** ... *\/ comment of a bench file as its --help. */
export function printHelp(fileUrl: string | URL): void {
  const source = readFileSync(typeof fileUrl === "string" && fileUrl.startsWith("file:") ? new URL(fileUrl) : fileUrl, "utf8");
  console.log(source.slice(source.indexOf("/**") + 3, source.indexOf("*/")).replace(/^ \* ?/gm, ""));
}

/** Parses repeated KEY=VALUE flags. */
export function keyValues(pairs: readonly string[], flag: string): Record<string, string> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new Error(`--${flag} wants KEY=VALUE, got "${pair}"`);
      return [pair.slice(0, eq), pair.slice(eq + 1)];
    }),
  );
}

/** Exits unless the URL points at this machine (benches never send traffic elsewhere). */
export function requireLocalUrl(flag: string, url: string): void {
  const host = new URL(url).hostname;
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1" && host !== "[::1]") {
    console.error(`bench: --${flag} must point at this machine, got host ${host}`);
    process.exit(2);
  }
}

/**
 * The flags every bench that starts Parley nodes takes, for parseArgs: where PostgreSQL and
 * NATS are (loopback only; environment BENCH_DATABASE_URL / BENCH_NATS_URL), extra node
 * environment, a JSON summary file, and --help.
 */
export const SERVICE_FLAGS = {
  "server-env": { type: "string", multiple: true, default: [] as string[] },
  "database-url": { type: "string", default: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
  "nats-url": { type: "string", default: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" },
  json: { type: "string" },
  help: { type: "boolean", default: false },
} as const;
