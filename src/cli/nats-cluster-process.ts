/**
 * Runs a small NATS JetStream cluster as child processes on loopback: the one piece of process
 * handling behind both `npm run cluster` (fixed ports, for people) and the tests' cluster helper
 * (free ports, killed and restarted by the tests). Each node is `nats-server` with its own client,
 * route and monitoring port, its own JetStream store under one data directory, and routes to all
 * the others. Only nats-server 2.9 features are used.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { connect } from "nats";

export interface NatsClusterOptions {
  /** Number of servers (default 3: the smallest cluster that survives losing one). */
  size?: number;
  /** Client ports, one per server; free ports when absent. */
  clientPorts?: readonly number[];
  /** Route (cluster) ports, one per server; free ports when absent. */
  clusterPorts?: readonly number[];
  /** HTTP monitoring ports (/varz, /connz, /routez, /jsz), one per server; free ports when absent. */
  monitorPorts?: readonly number[];
  /**
   * Where the servers keep JetStream data (a subdirectory per server). Absent: a fresh temporary
   * directory, removed at stop(); a directory you pass is left in place.
   */
  dataDir?: string;
  /** The cluster's name (default "parley"). */
  clusterName?: string;
  /** The nats-server executable (default: found on PATH or in the usual sbin directories). */
  binary?: string;
  /** How long start() and restart() wait for the cluster to form and elect a JetStream meta leader. */
  readyTimeoutMs?: number;
  /** Receives every line a server logs (default: kept only for output()). */
  onOutput?: (node: number, line: string) => void;
}

/** A running cluster. Nodes are numbered from 0. */
export interface NatsCluster {
  /** One client URL per server. */
  readonly urls: readonly string[];
  /** All client URLs comma-joined, as NATS_URL takes them. */
  readonly url: string;
  /** One monitoring base URL per server (http://127.0.0.1:port). */
  readonly monitorUrls: readonly string[];
  readonly dataDir: string;
  /** SIGKILLs server i (no clean shutdown, as a crash) and waits until it is gone. */
  kill(i: number): Promise<void>;
  /** Starts server i again with the same ports and data, and waits until it is back in the cluster. */
  restart(i: number): Promise<void>;
  /** Whether server i is running. */
  running(i: number): boolean;
  /** The index of the server a client connection of this name is attached to, if any. */
  serverOf(connectionName: string): Promise<number | undefined>;
  /** The tail of what server i logged. */
  output(i: number): string;
  /** Stops every server and removes the data directory if it made it. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_READY_TIMEOUT_MS = 30_000;
const STOP_DEADLINE_MS = 5_000;
const OUTPUT_KEPT = 64 * 1024;

/** The nats-server executable, or null when there is none. */
export function findNatsServer(): string | null {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, "nats-server");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * `count` distinct loopback TCP ports nobody listens on right now (never 4222, the shared NATS).
 * All are held open until every one is found, so no two are the same.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < count) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
      const address = server.address();
      if (typeof address === "object" && address && address.port !== 4222) ports.push(address.port);
    }
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
  return ports;
}

// Every server still running, so none outlives this process (a test run that fails, Ctrl-C).
const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

interface Node {
  readonly index: number;
  readonly args: string[];
  child: ChildProcess | null;
  /** Started and not stopped or killed on purpose: exiting would be a failure. */
  expected: boolean;
  exited: Promise<void>;
  output: string;
}

/** Starts the servers and waits until they form a cluster with a JetStream meta leader. */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`a cluster needs at least one server, got ${size}`);
  const binary = options.binary ?? findNatsServer();
  if (!binary) throw new Error("nats-server is not installed (not on PATH, /usr/sbin or /usr/local/bin)");
  const given = [options.clientPorts, options.clusterPorts, options.monitorPorts];
  for (const ports of given) if (ports && ports.length !== size) throw new Error(`${ports.length} ports given for ${size} servers`);
  const free = await freePorts(given.filter((ports) => !ports).length * size);
  const [clientPorts, clusterPorts, monitorPorts] = given.map((ports) => (ports ? [...ports] : free.splice(0, size))) as [number[], number[], number[]];
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), "parley-nats-"));
  if (ownDir) tempDirs.add(dataDir);
  const clusterName = options.clusterName ?? "parley";
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const urls = clientPorts.map((p) => `nats://127.0.0.1:${p}`);
  const monitorUrls = monitorPorts.map((p) => `http://127.0.0.1:${p}`);

  const nodes: Node[] = clientPorts.map((clientPort, i) => ({
    index: i,
    args: [
      "--addr", "127.0.0.1",
      "--port", String(clientPort),
      "--http_port", String(monitorPorts[i]),
      "--server_name", `n${i + 1}`,
      "--jetstream",
      "--store_dir", path.join(dataDir, `n${i + 1}`),
      "--cluster_name", clusterName,
      "--cluster", `nats://127.0.0.1:${clusterPorts[i]}`,
      "--routes", clusterPorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`).join(","),
    ],
    child: null,
    expected: false,
    exited: Promise.resolve(),
    output: "",
  }));

  const launch = (node: Node) => {
    const child = spawn(binary, node.args, { stdio: ["ignore", "pipe", "pipe"] });
    node.child = child;
    node.expected = true;
    live.add(child);
    let pending = "";
    const take = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      node.output = (node.output + text).slice(-OUTPUT_KEPT);
      if (!options.onOutput) return;
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        options.onOutput(node.index, pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    };
    child.stdout!.on("data", take);
    child.stderr!.on("data", take);
    node.exited = new Promise((resolve) =>
      child.once("exit", () => {
        live.delete(child);
        if (node.child === child) node.child = null;
        resolve();
      }),
    );
    child.once("error", (error) => {
      node.output += `\nspawn failed: ${error.message}`;
    });
  };

  const running = (i: number) => nodes[i]?.child !== null && nodes[i]?.child !== undefined;

  /** Waits until server i routes to every other running server and answers JetStream requests. */
  const ready = async (i: number) => {
    const deadline = Date.now() + readyTimeoutMs;
    let lastProblem = "not tried";
    const peers = nodes.filter((n) => n.index !== i && n.expected).length;
    while (Date.now() < deadline) {
      if (!running(i)) throw new Error(`nats-server n${i + 1} exited while starting:\n${nodes[i]!.output.slice(-3000)}`);
      const dead = nodes.find((n) => n.expected && !n.child);
      if (dead) throw new Error(`nats-server n${dead.index + 1} exited:\n${dead.output.slice(-3000)}`);
      try {
        const routez = (await (await fetch(`${monitorUrls[i]}/routez`, { signal: AbortSignal.timeout(1_000) })).json()) as { num_routes?: number };
        if ((routez.num_routes ?? 0) < peers) throw new Error(`${routez.num_routes ?? 0} of ${peers} routes`);
        const nc = await connect({ servers: urls[i], timeout: 1_000, maxReconnectAttempts: 0, ignoreClusterUpdates: true });
        try {
          const jsm = await nc.jetstreamManager({ timeout: 2_000 });
          await jsm.getAccountInfo();
          return;
        } finally {
          await nc.close();
        }
      } catch (error) {
        lastProblem = String(error);
      }
      await delay(100);
    }
    throw new Error(`nats-server n${i + 1} not ready within ${readyTimeoutMs} ms (${lastProblem}); output:\n${nodes[i]!.output.slice(-3000)}`);
  };

  const halt = async (node: Node, signal: NodeJS.Signals) => {
    node.expected = false;
    const child = node.child;
    if (!child) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_DEADLINE_MS);
    await node.exited;
    clearTimeout(timer);
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => halt(n, "SIGTERM")));
    if (ownDir) {
      rmSync(dataDir, { recursive: true, force: true });
      tempDirs.delete(dataDir);
    }
  };

  try {
    for (const node of nodes) launch(node);
    for (const node of nodes) await ready(node.index);
  } catch (error) {
    await stop();
    throw error;
  }

  const check = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= size) throw new Error(`no server ${i} in a cluster of ${size}`);
    if (stopped) throw new Error("the cluster was stopped");
    return nodes[i]!;
  };
  return {
    urls,
    url: urls.join(","),
    monitorUrls,
    dataDir,
    async kill(i) {
      await halt(check(i), "SIGKILL");
    },
    async restart(i) {
      const node = check(i);
      if (node.child) throw new Error(`nats-server n${i + 1} is still running`);
      launch(node);
      await ready(i);
    },
    running,
    async serverOf(connectionName) {
      for (const node of nodes) {
        if (!node.child) continue;
        try {
          const url = `${monitorUrls[node.index]}/connz?limit=1024&subs=0`;
          const connz = (await (await fetch(url, { signal: AbortSignal.timeout(2_000) })).json()) as { connections?: { name?: string }[] };
          if (connz.connections?.some((c) => c.name === connectionName)) return node.index;
        } catch {
          // a server going down is not the one serving it
        }
      }
      return undefined;
    },
    output: (i) => check(i).output,
    stop,
  };
}
