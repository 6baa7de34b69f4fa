/**
 * Servers for the real-time tests: the bus each mode runs on, clusters of nodes sharing one
 * PostgreSQL and one NATS subject prefix, and nodes run as child processes (to kill -9 them).
 *
 * Embedded mode (no DATABASE_URL): PGlite and the in-process bus, single node.
 * PostgreSQL mode (DATABASE_URL set): the real NATS at NATS_URL (default nats://127.0.0.1:4222;
 * NATS_URL=off runs the single-node tests on the in-process bus instead). Multi-node tests need
 * both and skip otherwise.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { connect } from "nats";
import {
  connectTo,
  createTestDatabase,
  startTestServer,
  TEST_RATE_LIMITS,
  withDeadline,
  type RemoteServer,
  type Protocol,
  type StartOptions,
  type TestServer,
} from "./test-server.ts";
import { openLiveFeed, type Feed } from "./feed.ts";

/** The NATS the tests use, or undefined for the in-process bus. */
export function testNatsUrl(): string | undefined {
  const configured = process.env.NATS_URL;
  if (configured === "off") return undefined;
  if (configured) return configured;
  return process.env.DATABASE_URL ? "nats://127.0.0.1:4222" : undefined;
}

/** Whether nodes can share state: a real PostgreSQL and a real NATS. */
export function multiNodeAvailable(): boolean {
  return Boolean(process.env.DATABASE_URL) && testNatsUrl() !== undefined;
}

/** A subject prefix no other run uses: lower-case letters and digits only. */
export function natsPrefix(): string {
  return `ptest${randomBytes(5).toString("hex")}`;
}

/**
 * The environment of a real-time test server: its bus, its prefix, and heartbeats every second
 * (so a stream opened without a cursor signals it is live quickly even without caught_up).
 */
export function realtimeEnv(prefix: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    NATS_URL: testNatsUrl(),
    NATS_PREFIX: prefix,
    FEED_HEARTBEAT_SECONDS: "1",
    ...overrides,
  };
}

/**
 * Deletes the JetStream streams (and KV buckets, which are streams) a test run created under
 * its prefix, so runs do not pile up state on the shared NATS. Best effort.
 */
export async function deleteNatsState(prefix: string, servers = testNatsUrl()): Promise<void> {
  if (!servers) return;
  const nc = await connect({ servers: servers.split(","), timeout: 2_000 });
  try {
    const jsm = await nc.jetstreamManager();
    const doomed: string[] = [];
    const needle = prefix.toLowerCase();
    for await (const si of jsm.streams.list()) {
      const subjects = si.config.subjects ?? [];
      if (si.config.name.toLowerCase().includes(needle) || subjects.some((s) => s.toLowerCase().includes(needle))) {
        doomed.push(si.config.name);
      }
    }
    for (const name of doomed) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
}

/** A single real-time node with a fresh database and its own prefix. */
export async function startRealtimeServer(overrides: Record<string, string | undefined> = {}): Promise<TestServer> {
  const prefix = natsPrefix();
  const server = await startTestServer(realtimeEnv(prefix, overrides));
  return {
    ...server,
    async stop() {
      try {
        await server.stop();
      } finally {
        await deleteNatsState(prefix).catch(() => undefined);
      }
    },
  };
}

/**
 * For a describe block: a real-time node for its tests (started before, stopped after) and
 * `live(user, protocol, label)`, a live feed closed after each test.
 */
export function useRealtimeServer() {
  let server: TestServer | undefined;
  const feeds: Feed[] = [];
  before(async () => {
    server = await startRealtimeServer();
  });
  afterEach(() => {
    for (const feed of feeds.splice(0)) feed.close();
  });
  after(async () => {
    await server?.stop();
  });
  return {
    get server(): TestServer {
      if (!server) throw new Error("the server starts in the before hook");
      return server;
    },
    async live(userId: string, protocol: Protocol, label: string): Promise<Feed> {
      const feed = await openLiveFeed(server!.clientsFor(userId, protocol), { label: `${label}/${protocol}` });
      feeds.push(feed);
      return feed;
    },
  };
}

let shared: Promise<TestServer> | undefined;

/** The typing TTL of the shared server: not the default, so tests can see the setting is honoured. */
export const SHARED_TYPING_TTL_SECONDS = 7;

/**
 * One default real-time node shared by the test files that need no special settings, started on
 * first use and stopped by a root-level after hook once every file has run. A node takes seconds
 * to start on the embedded database, so sharing it keeps the suite fast. Tests on it use fresh
 * users and conversations, so they never see each other's events.
 */
export function sharedRealtimeServer(): Promise<TestServer> {
  // Metrics on a free port, so tests can read what the server exports (server.metricsPort).
  shared ??= startRealtimeServer({ TYPING_TTL_SECONDS: String(SHARED_TYPING_TTL_SECONDS), METRICS_PORT: "0" });
  return shared;
}

// Registered while mocha loads the first spec file that imports this module, so it is a root
// hook: it runs after all files. Outside mocha (scripts importing the helpers) there is no hook.
if (typeof after === "function") {
  after(async function () {
    this.timeout(20_000);
    const server = await shared?.catch(() => undefined);
    shared = undefined;
    await server?.stop();
  });
}

/** Nodes sharing one database, one NATS prefix and one JWT secret. */
export interface Cluster {
  readonly nodes: TestServer[];
  readonly prefix: string;
  /** The NATS (one server, or a cluster's servers comma-separated) the nodes share. */
  readonly natsUrl: string;
  readonly databaseUrl: string;
  readonly secret: string;
  /** Starts one more node of the cluster (with these createApp options, if given). */
  addNode(overrides?: Record<string, string | undefined>, appOptions?: StartOptions["appOptions"]): Promise<TestServer>;
  /** Stops every node still running, drops the database and the NATS state. */
  stop(): Promise<void>;
}

/** Environment overrides for every node, or per node (by its index in `nodes`). */
export type NodeOverrides = Record<string, string | undefined> | ((index: number) => Record<string, string | undefined>);

export interface ClusterOptions {
  /**
   * The NATS the nodes share, e.g. a NatsCluster's url (default testNatsUrl()). A node's own
   * NATS_URL override may name just some of its servers.
   */
  natsUrl?: string;
  /** createApp options of the node with this index (0 = the first), e.g. fault hooks for one node. */
  appOptionsFor?: (index: number) => StartOptions["appOptions"];
}

/**
 * Starts `count` in-process nodes of one cluster. Needs DATABASE_URL and a NATS (multiNodeAvailable(),
 * or options.natsUrl).
 */
export async function startCluster(count: number, overrides: NodeOverrides = {}, options: ClusterOptions = {}): Promise<Cluster> {
  const natsUrl = options.natsUrl ?? testNatsUrl();
  if (!process.env.DATABASE_URL || natsUrl === undefined) throw new Error("a cluster needs DATABASE_URL and NATS");
  const database = (await createTestDatabase())!;
  const prefix = natsPrefix();
  const secret = randomBytes(32).toString("hex");
  const nodes: TestServer[] = [];
  const envOf = typeof overrides === "function" ? overrides : () => overrides;
  const start = (index: number, extra: Record<string, string | undefined> = {}, appOptions = options.appOptionsFor?.(index)) =>
    startTestServer(realtimeEnv(prefix, { NATS_URL: natsUrl, JWT_SECRET: secret, ...envOf(index), ...extra }), { databaseUrl: database.url, appOptions });
  try {
    // The first node migrates the database; the others start together.
    nodes.push(await start(0));
    nodes.push(...(await Promise.all(Array.from({ length: count - 1 }, (_, i) => start(i + 1)))));
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await database.drop();
    await deleteNatsState(prefix, natsUrl).catch(() => undefined);
    throw err;
  }
  return {
    nodes,
    prefix,
    natsUrl,
    databaseUrl: database.url,
    secret,
    async addNode(extra = {}, appOptions) {
      const node = await start(nodes.length, extra, appOptions);
      nodes.push(node);
      return node;
    },
    async stop() {
      try {
        await Promise.allSettled(nodes.map((n) => n.stop()));
      } finally {
        await database.drop();
        await deleteNatsState(prefix, natsUrl).catch(() => undefined);
      }
    },
  };
}

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The environment of nodes spawned as one deployment: one database, one NATS prefix, one token
 * secret, and heartbeats every second so tests see streams move quickly.
 */
export function sharedNodeEnv(databaseUrl: string, prefix: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    NATS_URL: testNatsUrl()!,
    NATS_PREFIX: prefix,
    JWT_SECRET: randomBytes(32).toString("hex"),
    FEED_HEARTBEAT_SECONDS: "1",
    ...overrides,
  };
}

/** After a failed test, prints what each spawned node logged last: the cause is usually there. */
export function printNodeOutputs(nodes: readonly NodeProcess[]): void {
  for (const [i, n] of nodes.entries()) console.error(`--- node ${String.fromCharCode(65 + i)} output (tail) ---\n${n.output().slice(-3000)}`);
}

/** A Parley node running as a child process (`node src/main.ts`). */
export interface NodeProcess extends RemoteServer {
  readonly child: ChildProcess;
  /** Everything the process wrote so far (stdout and stderr), for failure messages. */
  output(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then waits for the exit (SIGKILL after the deadline). */
  stop(): Promise<void>;
}

/**
 * Spawns `node src/main.ts` with the environment (PORT=0, HOST=127.0.0.1 added) and waits for
 * its "parley is serving" log line to learn the port.
 */
export async function spawnNode(env: Record<string, string>, label = "node"): Promise<NodeProcess> {
  const secret = env.JWT_SECRET;
  if (!secret) throw new Error("spawnNode needs JWT_SECRET");
  const child = spawn(path.join(repoRoot, "node_modules/.bin/node"), ["src/main.ts"], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      PORT: "0",
      HOST: "127.0.0.1",
      METRICS_PORT: "off",
      LOG_LEVEL: "info",
      ...TEST_RATE_LIMITS,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stderr!.on("data", keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );

  const port = await new Promise<number>((resolve, reject) => {
    let pending = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${label} did not log "parley is serving" within 30 s; output:\n${output.slice(-4000)}`));
    }, 30_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      keep(chunk);
      pending += chunk.toString("utf8");
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
          if (entry.msg === "parley is serving" && typeof entry.port === "number") {
            clearTimeout(timer);
            resolve(entry.port);
          }
        } catch {
          // not a JSON log line
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (code ${code}, signal ${signal}) before serving; output:\n${output.slice(-4000)}`));
    });
  });

  const remote = connectTo(`http://127.0.0.1:${port}`, { secret, issuer: env.JWT_ISSUER, audience: env.JWT_AUDIENCE });
  return {
    ...remote,
    child,
    output: () => output,
    exited,
    async stop() {
      remote.closeConnections();
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      try {
        await withDeadline(exited, 15_000, `${label} exit after SIGTERM`);
      } catch (err) {
        child.kill("SIGKILL");
        await exited;
        throw err;
      }
    },
  };
}
