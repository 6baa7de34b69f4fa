/**
 * A real ClamAV daemon for tests: Debian's `clamd` (package clamav-daemon, which .ci/run
 * installs) as a child process, with its own config, socket, log and signature database in a
 * temporary directory. The official virus databases cannot be downloaded here, so the database
 * is one the test writes: the EICAR test string as a body signature (.ndb, any file type, any
 * offset), so it is found wherever it sits in an upload. The string is put together from parts
 * at run time, so the repository never holds it verbatim (and no scanner flags our sources).
 *
 * No clamd installed fails the scanning tests in CI (CI=true), where they would otherwise
 * pass by testing nothing; elsewhere (`npm test` on a machine without clamav-daemon) they are
 * skipped with a warning naming the package, so the rest of the suite still runs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { ClamdClient, type ClamdAddress } from "../../src/media/clamd-client.ts";

/** The EICAR anti-virus test file's 68 bytes, assembled here so no source file contains them. */
export function eicar(): Buffer {
  const parts = ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-", "ANTIVIRUS-", "TEST-FILE!$H+H*"];
  return Buffer.from(parts.join(""), "latin1");
}

/** The name our signature database gives EICAR; clamd reports it with `.UNOFFICIAL` appended. */
export const EICAR_SIGNATURE_NAME = "Parley-Test-EICAR";

export interface ClamdOptions {
  /** clamd.conf StreamMaxLength, e.g. "2M" (clamd's default is 25M in Debian's config, 100M built in). */
  streamMaxLength?: string;
}

export interface TestClamd {
  /** tcp://127.0.0.1:<port> */
  readonly tcpUrl: string;
  /** unix://<temp dir>/clamd.sock */
  readonly unixUrl: string;
  readonly address: ClamdAddress;
  readonly pid: number;
  /** How many INSTREAM scans clamd has logged so far (LogClean is on, so clean ones too). */
  scansLogged(): Promise<number>;
  /** Freezes the daemon (SIGSTOP): connections are still accepted by the kernel, nothing answers. */
  pause(): void;
  /** Undoes pause() (SIGCONT). */
  resume(): void;
  /** Stops the daemon and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

const CLAMD_CANDIDATES = ["/usr/sbin/clamd", "/usr/local/sbin/clamd", "/usr/bin/clamd"];
const START_TIMEOUT_MS = 60_000;

function findClamd(): string | undefined {
  return [...CLAMD_CANDIDATES, ...(process.env.PATH ?? "").split(":").map((dir) => path.join(dir, "clamd"))].find((file) => existsSync(file));
}

/** Where the clamd binary is; throws (failing the test) when it is not installed. */
export function clamdBinary(): string {
  const found = findClamd();
  if (!found) throw new Error("clamd is not installed: `apt-get install clamav-daemon` (.ci/run does it).");
  return found;
}

/**
 * For a `before` hook of the tests that need clamd: without it installed, fails in CI and
 * skips the suite elsewhere, saying so.
 */
export function requireClamd(context: Mocha.Context): void {
  if (findClamd() !== undefined || process.env.CI) return;
  console.warn("    clamd is not installed: the malware-scanning tests are skipped (apt-get install clamav-daemon runs them; CI fails without it)");
  context.skip();
}

/** Starts clamd on a free loopback port and a unix socket, and waits until it answers PING. */
export async function startClamd(options: ClamdOptions = {}): Promise<TestClamd> {
  const binary = clamdBinary();
  const dir = await mkdtemp(path.join(os.tmpdir(), "parley-clamd-"));
  try {
    const databaseDir = path.join(dir, "db");
    const tmpDir = path.join(dir, "tmp");
    await Promise.all([mkdir(databaseDir), mkdir(tmpDir)]);
    await writeFile(path.join(databaseDir, "parley-test.ndb"), `${EICAR_SIGNATURE_NAME}:0:*:${eicar().toString("hex")}\n`);
    // A port taken between asking and binding makes clamd exit; then try another.
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch(binary, dir, databaseDir, tmpDir, await freePort(), options);
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function launch(binary: string, dir: string, databaseDir: string, tmpDir: string, port: number, options: ClamdOptions): Promise<TestClamd> {
  const socketPath = path.join(dir, "clamd.sock");
  const logFile = path.join(dir, "clamd.log");
  const config = [
    "Foreground yes",
    `TCPSocket ${port}`,
    "TCPAddr 127.0.0.1",
    `LocalSocket ${socketPath}`,
    `DatabaseDirectory ${databaseDir}`,
    `TemporaryDirectory ${tmpDir}`,
    `LogFile ${logFile}`,
    "LogClean yes",
    `StreamMaxLength ${options.streamMaxLength ?? "25M"}`,
    // No periodic database reload checks while a test runs.
    "SelfCheck 0",
  ];
  const configFile = path.join(dir, `clamd-${port}.conf`);
  await writeFile(configFile, config.join("\n") + "\n");
  const child = spawn(binary, ["-c", configFile], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-8000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const address: ClamdAddress = { kind: "tcp", host: "127.0.0.1", port };
  const client = new ClamdClient({ address, connectTimeoutMs: 1_000, scanTimeoutMs: 2_000 });
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.off("exit", killOnExit);
      throw new Error(`clamd exited while starting (code ${child.exitCode}, signal ${child.signalCode}):\n${output}`);
    }
    if (await client.ping().catch(() => false)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exited;
      process.off("exit", killOnExit);
      throw new Error(`clamd did not answer PING within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await delay(100);
  }

  let stopped: Promise<void> | undefined;
  return {
    tcpUrl: `tcp://127.0.0.1:${port}`,
    unixUrl: `unix://${socketPath}`,
    address,
    pid: child.pid!,
    async scansLogged() {
      const log = await readFile(logFile, "utf8").catch(() => "");
      return log.split("\n").filter((line) => line.includes("instream(")).length;
    },
    pause: () => signal(child, "SIGSTOP"),
    resume: () => signal(child, "SIGCONT"),
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          signal(child, "SIGCONT");
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(timer);
        }
        process.off("exit", killOnExit);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

function signal(child: ChildProcess, name: NodeJS.Signals): void {
  if (child.exitCode === null && child.signalCode === null) child.kill(name);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
