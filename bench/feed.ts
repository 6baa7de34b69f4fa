/**
 * `npm run bench:feed -- [--scenario all|pairs|group|reactions|idle] [--seconds 10] [--rate 3000] [--streams 10000] ...`
 *
 * The real-time feed against real PostgreSQL and NATS JetStream, with two Parley nodes
 * (src/main.ts as child processes, NODE_ID a and b) on a fresh database `parley_bench_<random>`
 * and a fresh NATS_PREFIX, both removed at the end even on failure or Ctrl-C. Every scenario
 * starts its own nodes, runs for a fixed time and is bounded; traffic goes to 127.0.0.1 only.
 *
 *   pairs      1:1 throughput and latency. P pairs of users with DIRECT conversations; each
 *              receiver holds an EventService.Subscribe stream on the node its sender does not
 *              send on (--layout), the senders send at a fixed aggregate rate (open loop: sends are issued on a schedule,
 *              never waiting for earlier ones, so a slow server cannot hide its latency by
 *              slowing the generator down). Each text carries its scheduled send time
 *              (performance.timeOrigin + performance.now()); the receiver computes
 *              send→deliver latency. Reports messages/s persisted (rows in the database),
 *              deliveries/s, latency percentiles, errors, undelivered and duplicate messages.
 *   group      One group of --group-size members (default 500), all subscribed, spread over
 *              both nodes; --group-senders members send --group-rate messages/s in total
 *              (alternating nodes). Reports deliveries/s and send→deliver percentiles.
 *   reactions  --reactors users (default 1,000) in one group (the server runs with
 *              MAX_GROUP_MEMBERS = reactors) react with the same emoji to one message, all
 *              calls fired at once, half on each node; a subscriber on each node measures from
 *              the moment each call was issued to the moment its reaction_added arrives.
 *              Repeated --rounds times on fresh messages. The final count must be exact.
 *   idle       --streams idle Subscribe streams (distinct users, each made known by GetMe
 *              first) against node A alone, --streams-per-connection per HTTP/2 connection.
 *              Node A's RSS (VmRSS) is read before and after, each time after a forced full
 *              GC through the node's inspector and a settle pause; reports KiB per stream
 *              (RSS and V8 heap) and how many streams stayed alive (each must receive a
 *              heartbeat after all are open). --push-to N keeps opening in --push-step steps
 *              up to N and reports the most streams the node held. --idle-nodes 2 spreads the
 *              streams evenly over nodes a and b (stream k on node k % 2) and reports each node's
 *              streams, alive count and KiB per stream; every stream must still see a heartbeat
 *              (the project's target: 50,000 streams across two nodes, a heartbeat on every one).
 *              Limits: the load generator holds ~70 KiB per stream (connect-node client streams),
 *              3.5 GiB at 50,000, near Node's default heap limit (~4 GiB here), so run large
 *              counts with NODE_OPTIONS=--max-old-space-size=8192 (the nodes don't inherit it).
 *              File descriptors and ports are no bound: 500 streams per connection is 100
 *              connections at 50,000.
 *
 * Flags:
 *   --scenario S                 all (default), pairs, group, reactions or idle
 *   --seconds N                  measured window of pairs and group (default 10)
 *   --warmup N                   seconds of traffic before the window (default 2)
 *   --rate N                     pairs: aggregate target send rate, messages/s (default 3000)
 *   --pairs N                    pairs: sender/receiver pairs (default 200)
 *   --layout split|one-way       pairs: split (default): half the pairs send on node a and receive on
 *                                node b, half the other way, as behind a load balancer; one-way:
 *                                all send on b and receive on a (one node takes every send)
 *   --connections N              HTTP/2 connections per node for each side (default 4)
 *   --sender-client raw|connect  how senders send and reactors react: a lean gRPC client
 *                                straight on node:http2 (default; same wire protocol, about
 *                                half the load generator's CPU per call) or connect-node's
 *                                createGrpcTransport. Subscribers always use connect-node.
 *   --group-size N               (default 500)   --group-rate N  (default 20)   --group-senders N (default 4)
 *   --reactors N                 (default 1000)  --rounds N      (default 3)    --emoji E (default 👍)
 *   --streams N                  idle: streams to measure at (default 10000)
 *   --push-to N                  idle: then keep opening up to N (default 0: don't)
 *   --push-step N                idle: streams per push step (default 5000)
 *   --streams-per-connection N   idle: (default 500; the server allows 1000)
 *   --idle-nodes 1|2             idle: streams on node a alone (default; the per-stream memory figure
 *                                of one node) or spread evenly over a and b
 *   --no-gc                      idle: don't force GC through the inspector before reading RSS
 *   --heap-snapshot DIR          idle: write V8 heap snapshots of node a at baseline and at --streams
 *                                (diagnostic: a snapshot inflates RSS, so its figures are off)
 *   --heartbeat-seconds N        FEED_HEARTBEAT_SECONDS of the nodes (default: the server's own, 15)
 *   --profile                    CPU-profile the nodes through their inspector over the measured
 *                                window (pairs, group, reactions; idle: one heartbeat period at
 *                                --streams); writes <profile dir>/<scenario>-<node>.cpuprofile
 *                                (summarize with `node bench/lib/cpuprofile.ts FILE`)
 *   --profile-dir DIR            (default /tmp/parley-feed-prof-<run id>)
 *   --sample-pg                  sample pg_stat_activity of the bench database every 10 ms over the
 *                                measured window (pairs, group, reactions) and report wait events
 *   --server-env K=V             extra environment for the nodes (repeatable)
 *   --server-node-arg A          extra node argument for the nodes (repeatable)
 *   --database-url URL           PostgreSQL server to create the bench database on
 *   --nats-url URL               (default nats://127.0.0.1:4222)
 *   --json FILE                  write the JSON summary to FILE as well
 *   --rate-limits LIST           run the whole bench once per mode, back to back, and compare: off
 *                                (RATE_LIMITS=off), memory (buckets in each node), redis (buckets in
 *                                Redis at --redis-url, default redis://127.0.0.1:6379). Without it: limits
 *                                on in memory, above what the bench sends (nothing is refused)
 *
 * Every node's output goes to /tmp/parley-feed-logs-<run id>/<scenario>-<node>.log; what a
 * node logs during a scenario (warn and above) is shown under its result block.
 *
 * The last line of stdout is the JSON summary. Exit status 1 when a scenario failed or
 * verification found lost, duplicated or miscounted data; missing a target alone is not a
 * failure (the result block says MET / NOT MET).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { createClient } from "@connectrpc/connect";
import type { Event } from "../gen/parley/v1/event_pb.ts";
import { EventService } from "../gen/parley/v1/event_service_pb.ts";
import { ConversationType } from "../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import { UserService } from "../gen/parley/v1/user_service_pb.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { createBenchDatabase, postgresVersion, type BenchDatabase } from "./lib/database.ts";
import { closeConnections, grpcConnections, type Connection } from "./lib/grpc.ts";
import { Inspector } from "./lib/inspector.ts";
import { RawGrpcConnection } from "./lib/raw-grpc.ts";
import { natsPrefixForRun, natsServerPid } from "./lib/nats.ts";
import { startPgSampler } from "./lib/pg-sampler.ts";
import { busyCores, CpuMeter, formatCpu, peakRssKiB, pidsByComm, rssKiB, type CpuReport } from "./lib/proc.ts";
import { benchNodeEnv, ParleyNode } from "./lib/server.ts";
import { RATE_LIMIT_FLAGS, rateLimitModes, runRateLimitModes } from "./lib/rate-limits.ts";
import { formatLatency, Samples, summarize, type LatencySummary } from "./lib/stats.ts";
import {
  closeStreams,
  countRows,
  ensureUsers as ensureUsersOn,
  openStreams,
  PacedTraffic,
  senderConnections as senderConnectionsOf,
  Stream,
  Tokens,
  wall,
  withTimeout,
  type PacedOptions,
  type Route,
  type User,
} from "./lib/traffic.ts";
import { eachLimited, ErrorTally, freePort, intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS, sleep } from "./lib/util.ts";

// ---------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  allowNegative: true,
  options: {
    scenario: { type: "string", default: "all" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    rate: { type: "string", default: "3000" },
    pairs: { type: "string", default: "200" },
    connections: { type: "string", default: "4" },
    "sender-client": { type: "string", default: "raw" },
    layout: { type: "string", default: "split" },
    "group-size": { type: "string", default: "500" },
    "group-rate": { type: "string", default: "20" },
    "group-senders": { type: "string", default: "4" },
    reactors: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    emoji: { type: "string", default: "👍" },
    streams: { type: "string", default: "10000" },
    "push-to": { type: "string", default: "0" },
    "push-step": { type: "string", default: "5000" },
    "streams-per-connection": { type: "string", default: "500" },
    "idle-nodes": { type: "string", default: "1" },
    gc: { type: "boolean", default: true },
    "heap-snapshot": { type: "string" },
    "sample-pg": { type: "boolean", default: false },
    "heartbeat-seconds": { type: "string" },
    profile: { type: "boolean", default: false },
    "profile-dir": { type: "string" },
    "server-node-arg": { type: "string", multiple: true, default: [] },
    ...SERVICE_FLAGS,
    ...RATE_LIMIT_FLAGS,
  },
});
// --rate-limits: this process only runs the bench once per mode (each a child process) and compares.
const RATE_LIMIT_MODES = rateLimitModes(flags["rate-limits"]);
if (RATE_LIMIT_MODES !== null) process.exit((await runRateLimitModes(import.meta.url, RATE_LIMIT_MODES, flags["redis-url"])) ? 0 : 1);
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}

const SCENARIOS = ["pairs", "group", "reactions", "idle"] as const;
type Scenario = (typeof SCENARIOS)[number];
if (flags.scenario !== "all" && !(SCENARIOS as readonly string[]).includes(flags.scenario)) {
  console.error(`bench: --scenario must be all, ${SCENARIOS.join(", ")}; got "${flags.scenario}"`);
  process.exit(2);
}
const RUN: Scenario[] = flags.scenario === "all" ? [...SCENARIOS] : [flags.scenario as Scenario];
const SECONDS = intFlag("seconds", flags.seconds, 1, 600);
const WARMUP = intFlag("warmup", flags.warmup, 0, 120);
const RATE = intFlag("rate", flags.rate, 1, 100_000);
const PAIRS = intFlag("pairs", flags.pairs, 1, 10_000);
const CONNECTIONS = intFlag("connections", flags.connections, 1, 100);
const SENDER_CLIENT = flags["sender-client"];
const PAIRS_LAYOUT = flags.layout;
if (PAIRS_LAYOUT !== "split" && PAIRS_LAYOUT !== "one-way") {
  console.error(`bench: --layout must be split or one-way, got "${PAIRS_LAYOUT}"`);
  process.exit(2);
}
if (SENDER_CLIENT !== "raw" && SENDER_CLIENT !== "connect") {
  console.error(`bench: --sender-client must be raw or connect, got "${SENDER_CLIENT}"`);
  process.exit(2);
}
const GROUP_SIZE = intFlag("group-size", flags["group-size"], 3, 10_000);
const GROUP_RATE = intFlag("group-rate", flags["group-rate"], 1, 10_000);
const GROUP_SENDERS = intFlag("group-senders", flags["group-senders"], 1, GROUP_SIZE);
const REACTORS = intFlag("reactors", flags.reactors, 3, 100_000);
const ROUNDS = intFlag("rounds", flags.rounds, 1, 100);
const EMOJI = flags.emoji;
const STREAMS = intFlag("streams", flags.streams, 1, 200_000);
const PUSH_TO = intFlag("push-to", flags["push-to"], 0, 200_000);
const PUSH_STEP = intFlag("push-step", flags["push-step"], 1, 200_000);
const PER_CONNECTION = intFlag("streams-per-connection", flags["streams-per-connection"], 1, 1000);
const IDLE_NODES = intFlag("idle-nodes", flags["idle-nodes"], 1, 2);
const HEARTBEAT_SECONDS = flags["heartbeat-seconds"] === undefined ? null : intFlag("heartbeat-seconds", flags["heartbeat-seconds"], 1, 3600);
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);
const EXTRA_ENV = keyValues(flags["server-env"], "server-env");

const ISSUER = "parley-bench";
const AUDIENCE = "parley";
/** Deadline of every unary call. */
const CALL_TIMEOUT_MS = 10_000;
/** How long after the last send the bench waits for deliveries still under way. */
const DRAIN_MS = 10_000;
const TEXT_BYTES = 100;
/**
 * At most this many sends outstanding per sender HTTP/2 connection (the server allows 1,000
 * concurrent streams on one); beyond it the generator skips a send and counts it, rather than
 * queue without bound. Any skipped send fails the run.
 */
const MAX_IN_FLIGHT_PER_CONNECTION = 900;

const RUN_ID = randomBytes(4).toString("hex");
const SECRET = randomBytes(32).toString("base64url");
const LOG_DIR = path.join(os.tmpdir(), `parley-feed-logs-${RUN_ID}`);
mkdirSync(LOG_DIR, { recursive: true });
const PROFILE_DIR = flags["profile-dir"] ?? path.join(os.tmpdir(), `parley-feed-prof-${RUN_ID}`);

// The whole run is bounded: generous setup allowance per scenario plus what the flags ask for.
const WATCHDOG_MS =
  1000 *
  (120 +
    (RUN.includes("pairs") ? 90 + WARMUP + SECONDS : 0) +
    (RUN.includes("group") ? 90 + WARMUP + SECONDS : 0) +
    (RUN.includes("reactions") ? 90 + ROUNDS * 30 + REACTORS / 50 : 0) +
    (RUN.includes("idle") ? 120 + (Math.max(STREAMS, PUSH_TO) / 40) + (HEARTBEAT_SECONDS ?? 15) * 4 * (1 + Math.ceil(Math.max(0, PUSH_TO - STREAMS) / PUSH_STEP)) : 0));

// ---------------------------------------------------------------------------------------
// Shared plumbing

interface Env {
  db: BenchDatabase;
  natsPrefix: string;
  dataDir: string;
}

/**
 * Starts nodes a (and b) for a scenario; stop() stops them and prints what they logged.
 * With --profile each node runs with an inspector; profileWindow() CPU-profiles just the
 * measured window and writes <profile dir>/<scenario>-<node>.cpuprofile.
 */
async function startNodes(env: Env, scenario: string, labels: readonly string[], extra: Record<string, string> = {}, nodeArgs: (label: string) => Promise<string[]> = async () => []) {
  const nodes: ParleyNode[] = [];
  const inspectPorts: number[] = [];
  for (const label of labels) {
    const args = [...flags["server-node-arg"], ...(await nodeArgs(label))];
    if (flags.profile && !args.some((a) => a.startsWith("--inspect"))) {
      const port = await freePort();
      inspectPorts.push(port);
      args.push(`--inspect=127.0.0.1:${port}`);
    }
    nodes.push(
      await ParleyNode.start({
        label,
        nodeArgs: args,
        logFile: path.join(LOG_DIR, `${scenario}-${label}.log`),
        env: {
          ...benchNodeEnv({ databaseUrl: env.db.url, natsUrl: NATS_URL, natsPrefix: env.natsPrefix, secret: SECRET, issuer: ISSUER, audience: AUDIENCE, dataDir: env.dataDir }),
          NODE_ID: label,
          ...(HEARTBEAT_SECONDS !== null && { FEED_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS) }),
          ...extra,
          ...EXTRA_ENV,
        },
      }),
    );
  }
  const failed = Promise.race(nodes.map((n) => n.failed));
  failed.catch(() => {});
  const inspectors = await Promise.all(inspectPorts.map((port) => Inspector.connect(port)));
  console.log(`   (${scenario}: ${nodes.map((n, k) => `node ${n.label} pid ${n.pid} port ${n.port}${inspectPorts[k] ? ` inspector ${inspectPorts[k]}` : ""}`).join(", ")})`);
  const profiled = inspectors.length === nodes.length;
  const sampler = flags["sample-pg"] ? startPgSampler(ADMIN_URL, env.db.name) : null;
  /** Window hooks: CPU profiles (--profile) and PostgreSQL wait sampling (--sample-pg). */
  const profileWindow = {
    pgWaits: null as Record<string, string> | null,
    async start() {
      sampler?.start();
      if (profiled) await Promise.all(inspectors.map((i) => i.startProfile()));
    },
    async stop() {
      sampler?.stop();
      if (sampler) this.pgWaits = await sampler.result();
      if (!profiled) return;
      mkdirSync(PROFILE_DIR, { recursive: true });
      await Promise.all(inspectors.map((i, k) => i.stopProfile(path.join(PROFILE_DIR, `${scenario}-${nodes[k]!.label}.cpuprofile`))));
    },
  };
  const stopAll = async () => {
    for (const i of inspectors) i.close();
    await Promise.all(nodes.map((n) => n.stop()));
    for (const n of nodes) {
      const during = n.linesBeforeStop ?? n.logLines;
      const file = path.join(LOG_DIR, `${scenario}-${n.label}.log`);
      if (during > 0) {
        const show = (line: string) => console.log(`     ${line.length > 300 ? line.slice(0, 300) + "…" : line}`);
        const lines = during <= 6 ? n.firstLog.slice(0, during) : [...n.firstLog.slice(0, 3), `… (${during - 3} more; all in ${file})`];
        console.log(`   node ${n.label} logged ${during} lines during the scenario (warn and above, inspector notices):`);
        lines.forEach(show);
      }
      if (n.shutdownLog.size > 0) {
        console.log(`   node ${n.label} while shutting down: ${[...n.shutdownLog].map(([k, v]) => `${v}× ${k.length > 120 ? k.slice(0, 120) + "…" : k}`).join("; ")}`);
      }
    }
  };
  return { nodes, failed, stop: stopAll, profileWindow };
}

const tokens = new Tokens(SECRET, ISSUER, AUDIENCE);
const authorization = (userId: string) => tokens.authorization(userId);
const makeUsers = (prefix: string, n: number) => tokens.makeUsers(prefix, n);
const ensureUsers = (users: readonly User[], connections: readonly Connection[], concurrency = 64) => ensureUsersOn(users, connections, CALL_TIMEOUT_MS, concurrency);
/** Open-loop traffic with this run's window, drain and text length. */
const PACED: PacedOptions = { warmupSeconds: WARMUP, seconds: SECONDS, drainMs: DRAIN_MS, textBytes: TEXT_BYTES };

function cpuPids(nodes: readonly ParleyNode[]): Record<string, number> {
  const pids: Record<string, number> = {};
  for (const node of nodes) pids[`node${node.label.toUpperCase()}`] = node.pid;
  const nats = natsServerPid(NATS_URL);
  if (nats !== null) pids.nats = nats;
  return pids;
}

/** Sender connections to a node with this run's --sender-client. */
const senderConnections = (baseUrl: string, connect: readonly Connection[]) => senderConnectionsOf(baseUrl, connect, SENDER_CLIENT, CALL_TIMEOUT_MS);

/** Runs the traffic, measures CPU over the window, drains, counts rows. */
async function measureTraffic(
  env: Env,
  traffic: PacedTraffic,
  nodes: readonly ParleyNode[],
  failed: Promise<never>,
  conversationIds: string[],
  profileWindow: { start(): Promise<void>; stop(): Promise<void>; pgWaits: Record<string, string> | null },
) {
  const meter = new CpuMeter(cpuPids(nodes));
  let cpu: CpuReport | null = null;
  let profiling: Promise<void> = Promise.resolve();
  await Promise.race([
    failed,
    traffic.run((edge) => {
      if (edge === "start") {
        meter.start();
        profiling = profileWindow.start();
      } else {
        cpu = meter.stop();
        profiling = profiling.then(() => profileWindow.stop());
      }
    }),
  ]);
  await profiling;
  const drainSeconds = await Promise.race([failed, traffic.drain()]);
  const rows = await countRows(env.db, conversationIds, wall(traffic.t0 + WARMUP * 1000), wall(traffic.t0 + (WARMUP + SECONDS) * 1000));
  return { cpu: cpu!, drainSeconds: round(drainSeconds), rows, pgWaits: profileWindow.pgWaits };
}

// ---------------------------------------------------------------------------------------
// Scenario: pairs

async function scenarioPairs(env: Env) {
  const { nodes, failed, stop, profileWindow } = await startNodes(env, "pairs", ["a", "b"]);
  const [a, b] = nodes as [ParleyNode, ParleyNode];
  const toA = grpcConnections(a.baseUrl, CONNECTIONS);
  const toB = grpcConnections(b.baseUrl, CONNECTIONS);
  try {
    const senders = await makeUsers(`fp-${RUN_ID}-s`, PAIRS);
    const receivers = await makeUsers(`fp-${RUN_ID}-r`, PAIRS);
    // Pair i sends on one node and receives on the other, so every delivery crosses nodes.
    // "split": even pairs send on b, odd pairs on a (both nodes take sends, as behind a load
    // balancer); "one-way": every pair sends on b and receives on a.
    const sendsOnA = (i: number) => PAIRS_LAYOUT === "split" && i % 2 === 1;
    const side = (onA: boolean) => (onA ? { node: a, connections: toA } : { node: b, connections: toB });
    const senderSide = (i: number) => side(sendsOnA(i));
    const receiverSide = (i: number) => side(!sendsOnA(i));
    const byNode = <T,>(items: readonly T[], where: (i: number) => boolean) => items.filter((_, i) => where(i));
    await Promise.race([
      failed,
      Promise.all([
        ensureUsers(byNode(senders, sendsOnA), toA),
        ensureUsers(byNode(senders, (i) => !sendsOnA(i)), toB),
        ensureUsers(byNode(receivers, (i) => !sendsOnA(i)), toA),
        ensureUsers(byNode(receivers, sendsOnA), toB),
      ]),
    ]);
    const conversationIds: string[] = new Array(PAIRS);
    await Promise.race([
      failed,
      eachLimited(senders, 16, async (sender, i) => {
        const { connections } = senderSide(i);
        const res = await createClient(ConversationService, connections[i % CONNECTIONS]!.transport).createConversation(
          { type: ConversationType.DIRECT, memberIds: [receivers[i]!.id] },
          { headers: sender.headers, timeoutMs: CALL_TIMEOUT_MS },
        );
        conversationIds[i] = res.conversation!.id;
      }),
    ]);
    const routeOnA = senderConnections(a.baseUrl, toA);
    const routeOnB = senderConnections(b.baseUrl, toB);
    const routes: Route[] = senders.map((sender, i) => (sendsOnA(i) ? routeOnA : routeOnB)(i, sender, conversationIds[i]!));
    const traffic = new PacedTraffic(routes, RATE, 1, `${RUN_ID}-p-`, CONNECTIONS * MAX_IN_FLIGHT_PER_CONNECTION, (i, stream) => (stream === i % PAIRS ? 0 : -1), PACED);
    // Streams keep their pair's number, whichever node they are on.
    const receiverStreams = await Promise.race([
      failed,
      Promise.all(
        [a, b].map((node) => {
          const indexes = receivers.map((_, i) => i).filter((i) => receiverSide(i).node === node);
          const connections = node === a ? toA : toB;
          return openStreams(indexes.map((i) => receivers[i]!), connections, (event, at, k) => traffic.deliver(event, at, indexes[k]!));
        }),
      ),
    ]);
    const streams = receiverStreams.flat();
    const measured = await measureTraffic(env, traffic, nodes, failed, conversationIds, profileWindow);
    const result = traffic.result();
    const streamsLost = streams.filter((s) => !s.open).length;
    await closeStreams(streams);
    const persistedPerSecond = round(measured.rows.in_window / SECONDS, 1);
    const verification = {
      rows: measured.rows.total,
      acknowledged: result.acked,
      rowsMatchAcked: measured.rows.total >= result.acked && measured.rows.total === measured.rows.distinct_ids,
      streamsEndedEarly: streamsLost,
    };
    const ok =
      verification.rowsMatchAcked && result.undeliveredTotal === 0 && result.duplicateDeliveries === 0 && result.misroutedDeliveries === 0 && result.errors.total === 0 && result.skippedByGenerator === 0 && streamsLost === 0;
    const summary = {
      config: { pairs: PAIRS, layout: PAIRS_LAYOUT, rate: RATE, seconds: SECONDS, warmup: WARMUP, connectionsPerSide: CONNECTIONS, senderClient: SENDER_CLIENT },
      persistedPerSecond,
      ...result,
      verification,
      cpuCores: measured.cpu,
      pgWaits: measured.pgWaits,
      drainSeconds: measured.drainSeconds,
      target: { rate: 3000, p99Ms: 100, met: persistedPerSecond >= 3000 && result.latencyMs.p99 < 100 },
      ok,
    };
    printBlock(`pairs  ${PAIRS} DIRECT pairs, ${PAIRS_LAYOUT === "split" ? "half sending on node a and receiving on b, half the other way" : "receivers subscribed on node a, senders on node b"} (${SENDER_CLIENT} gRPC client), ${RATE} msg/s target, ${SECONDS} s (+${WARMUP} s warm-up)`, [
      ["persisted", `${persistedPerSecond} messages/s   (${measured.rows.in_window} rows created in the window; ${result.ackedInWindow} of ${result.scheduledInWindow} scheduled sends acknowledged)`],
      ["deliveries", `${result.deliveriesPerSecond} /s   (${result.deliveriesInWindow} in the window)`],
      ["send→deliver ms", formatLatency(result.latencyMs)],
      ["send→ack ms", formatLatency(result.sendAckMs)],
      ["generator lag ms", `p99 ${result.generatorLagMs.p99}   max ${result.generatorLagMs.max}   (how late sends left vs the schedule; latency counts from the schedule)`],
      ["errors", `${result.errors.total}${result.errors.total ? "  " + JSON.stringify(result.errors.byCode) + "  " + result.errors.samples.slice(0, 4).join(" | ") : ""}; skipped by generator (over ${CONNECTIONS * MAX_IN_FLIGHT_PER_CONNECTION} in flight) ${result.skippedByGenerator}`],
      ["verification", `rows ${verification.rows} vs acknowledged ${verification.acknowledged}; undelivered ${result.undeliveredTotal}; duplicates ${result.duplicateDeliveries}; misrouted ${result.misroutedDeliveries}; streams ended early ${streamsLost}  => ${ok ? "OK" : "FAILED"}`],
      ["cpu", formatCpu(measured.cpu)],
      ["drain", `${measured.drainSeconds} s after the last send until all delivered`],
      ...pgWaitRows(measured.pgWaits),
      ["target", `>= 3000 msg/s persisted and P99 send→deliver < 100 ms: ${summary.target.met ? "MET" : "NOT MET"}`],
    ]);
    return summary;
  } finally {
    closeConnections([...toA, ...toB]);
    await stop();
  }
}

// ---------------------------------------------------------------------------------------
// Scenario: group

async function scenarioGroup(env: Env) {
  const { nodes, failed, stop, profileWindow } = await startNodes(env, "group", ["a", "b"], { MAX_GROUP_MEMBERS: String(Math.max(500, GROUP_SIZE)) });
  const [a, b] = nodes as [ParleyNode, ParleyNode];
  const toA = grpcConnections(a.baseUrl, CONNECTIONS);
  const toB = grpcConnections(b.baseUrl, CONNECTIONS);
  try {
    const members = await makeUsers(`fg-${RUN_ID}`, GROUP_SIZE);
    const onA = members.filter((_, i) => i % 2 === 0);
    const onB = members.filter((_, i) => i % 2 === 1);
    await Promise.race([failed, Promise.all([ensureUsers(onA, toA), ensureUsers(onB, toB)])]);
    const created = await Promise.race([
      failed,
      createClient(ConversationService, toA[0]!.transport).createConversation(
        { type: ConversationType.GROUP, name: "bench group", memberIds: members.slice(1).map((m) => m.id) },
        { headers: members[0]!.headers, timeoutMs: CALL_TIMEOUT_MS },
      ),
    ]);
    const conversationId = created.conversation!.id;
    const routeOn = [senderConnections(a.baseUrl, toA), senderConnections(b.baseUrl, toB)];
    const routes: Route[] = members.slice(0, GROUP_SENDERS).map((sender, k) => routeOn[k % 2]!(Math.floor(k / 2), sender, conversationId));
    const traffic = new PacedTraffic(routes, GROUP_RATE, GROUP_SIZE, `${RUN_ID}-g-`, Math.min(2, GROUP_SENDERS) * Math.min(CONNECTIONS, Math.ceil(GROUP_SENDERS / 2)) * MAX_IN_FLIGHT_PER_CONNECTION, (_, stream) => stream, PACED);
    const streams = await Promise.race([failed, Promise.all([openStreams(onA, toA, traffic.deliver, 0), openStreams(onB, toB, traffic.deliver, onA.length)])]).then((s) => s.flat());
    const measured = await measureTraffic(env, traffic, nodes, failed, [conversationId], profileWindow);
    const result = traffic.result();
    const streamsLost = streams.filter((s) => !s.open).length;
    await closeStreams(streams);
    const ok = result.undeliveredTotal === 0 && result.duplicateDeliveries === 0 && result.misroutedDeliveries === 0 && result.errors.total === 0 && streamsLost === 0 && measured.rows.total >= result.acked;
    const summary = {
      config: { members: GROUP_SIZE, senders: GROUP_SENDERS, senderClient: SENDER_CLIENT, rate: GROUP_RATE, seconds: SECONDS, warmup: WARMUP, streamsOnA: onA.length, streamsOnB: onB.length },
      persistedPerSecond: round(measured.rows.in_window / SECONDS, 1),
      ...result,
      verification: { rows: measured.rows.total, acknowledged: result.acked, streamsEndedEarly: streamsLost },
      cpuCores: measured.cpu,
      pgWaits: measured.pgWaits,
      drainSeconds: measured.drainSeconds,
      ok,
    };
    printBlock(`group  ${GROUP_SIZE} members all subscribed (${onA.length} on node a, ${onB.length} on node b), ${GROUP_SENDERS} senders on both nodes, ${GROUP_RATE} msg/s, ${SECONDS} s (+${WARMUP} s warm-up)`, [
      ["persisted", `${summary.persistedPerSecond} messages/s   (${result.ackedInWindow} of ${result.scheduledInWindow} scheduled sends acknowledged)`],
      ["deliveries", `${result.deliveriesPerSecond} /s   (${result.deliveriesInWindow} in the window; expected ${GROUP_RATE * GROUP_SIZE}/s)`],
      ["send→deliver ms", formatLatency(result.latencyMs)],
      ["send→ack ms", formatLatency(result.sendAckMs)],
      ["errors", `${result.errors.total}${result.errors.total ? "  " + JSON.stringify(result.errors.byCode) + "  " + result.errors.samples.slice(0, 4).join(" | ") : ""}`],
      ["verification", `rows ${measured.rows.total} vs acknowledged ${result.acked}; undelivered ${result.undeliveredTotal}; duplicates ${result.duplicateDeliveries}; misrouted ${result.misroutedDeliveries}; streams ended early ${streamsLost}  => ${ok ? "OK" : "FAILED"}`],
      ["cpu", formatCpu(measured.cpu)],
      ...pgWaitRows(measured.pgWaits),
    ]);
    return summary;
  } finally {
    closeConnections([...toA, ...toB]);
    await stop();
  }
}

// ---------------------------------------------------------------------------------------
// Scenario: reactions

async function scenarioReactions(env: Env) {
  const { nodes, failed, stop, profileWindow } = await startNodes(env, "reactions", ["a", "b"], { MAX_GROUP_MEMBERS: String(Math.max(500, REACTORS)) });
  const [a, b] = nodes as [ParleyNode, ParleyNode];
  // Enough connections that 1,000 simultaneous calls fit the 1,000-streams-per-connection limit.
  const perNode = Math.max(CONNECTIONS, Math.ceil(REACTORS / 2 / 500));
  const toA = grpcConnections(a.baseUrl, perNode);
  const toB = grpcConnections(b.baseUrl, perNode);
  try {
    const users = await makeUsers(`fr-${RUN_ID}`, REACTORS);
    const sideOf = (i: number) => (i % 2 === 0 ? toA : toB);
    // GetMe through each user's own connection: creates the rows and opens every connection.
    await Promise.race([failed, Promise.all([ensureUsers(users.filter((_, i) => i % 2 === 0), toA), ensureUsers(users.filter((_, i) => i % 2 === 1), toB)])]);
    const created = await Promise.race([
      failed,
      createClient(ConversationService, toA[0]!.transport).createConversation(
        { type: ConversationType.GROUP, name: "bench reactions", memberIds: users.slice(1).map((u) => u.id) },
        { headers: users[0]!.headers, timeoutMs: CALL_TIMEOUT_MS },
      ),
    ]);
    const conversationId = created.conversation!.id;
    const index = new Map(users.map((u, i) => [u.id, i]));
    // Each reactor calls through its node's connections: the lean raw client or connect-node's.
    const rawA = Array.from({ length: perNode }, () => new RawGrpcConnection(a.baseUrl));
    const rawB = Array.from({ length: perNode }, () => new RawGrpcConnection(b.baseUrl));
    const react = users.map((user, i) => {
      const k = Math.floor(i / 2) % perNode;
      if (SENDER_CLIENT === "raw") {
        const connection = (i % 2 === 0 ? rawA : rawB)[k]!;
        return (seq: bigint) => connection.unary(MessageService.method.addReaction, { conversationId, seq, emoji: EMOJI }, user.headers, CALL_TIMEOUT_MS);
      }
      const client = createClient(MessageService, sideOf(i)[k]!.transport);
      return (seq: bigint) => client.addReaction({ conversationId, seq, emoji: EMOJI }, { headers: user.headers, timeoutMs: CALL_TIMEOUT_MS });
    });
    // Open the raw connections before the storm (a cheap call through each).
    if (SENDER_CLIENT === "raw") {
      await Promise.all(
        [...rawA.map((c) => ({ c, u: users[0]! })), ...rawB.map((c) => ({ c, u: users[1]! }))].map(({ c, u }) => c.unary(UserService.method.getMe, {}, u.headers, CALL_TIMEOUT_MS)),
      );
    }

    // One subscriber on each node; each sees every reaction_added.
    let round_ = -1;
    let seqOfRound = 0n;
    let issuedAt = new Float64Array(REACTORS);
    const perSubscriber = [new Samples(REACTORS * ROUNDS), new Samples(REACTORS * ROUNDS)];
    // Propagation alone: from the moment the server recorded the reaction's event (its
    // created_at, taken in the batch's transaction just before commit) to its arrival.
    const recordedToEvent = new Samples(REACTORS * ROUNDS * 2);
    const seen = [new Uint8Array(REACTORS), new Uint8Array(REACTORS)];
    const maxCount = [0n, 0n];
    let strangers = 0;
    let duplicates = 0;
    let firstEventAt = Infinity;
    let lastEventAt = 0;
    const onEventOf = (s: 0 | 1) => (event: Event, at: number) => {
      if (event.kind.case !== "reactionAdded") return;
      const r = event.kind.value;
      const i = index.get(r.userId);
      if (i === undefined || r.messageSeq !== seqOfRound || r.emoji !== EMOJI) return void strangers++;
      if (seen[s]![i]) duplicates++;
      else {
        seen[s]![i] = 1;
        perSubscriber[s]!.add(at - issuedAt[i]!);
        if (event.createdAt) recordedToEvent.add(wall(at) - (Number(event.createdAt.seconds) * 1000 + event.createdAt.nanos / 1e6));
        firstEventAt = Math.min(firstEventAt, at);
        lastEventAt = Math.max(lastEventAt, at);
      }
      if (r.count > maxCount[s]!) maxCount[s] = r.count;
    };
    const subscribers = [
      ...(await Promise.race([failed, openStreams([users[0]!], toA, onEventOf(0))])),
      ...(await Promise.race([failed, openStreams([users[1]!], toB, onEventOf(1))])),
    ];

    const rounds: object[] = [];
    const all = new Samples(REACTORS * ROUNDS * 2);
    const errors = new ErrorTally();
    let exact = true;
    const meter = new CpuMeter(cpuPids(nodes));
    meter.start();
    await profileWindow.start();
    for (round_ = 0; round_ < ROUNDS; round_++) {
      const sent = await createClient(MessageService, toA[0]!.transport).sendMessage(
        { conversationId, clientMessageId: `${RUN_ID}-r-${round_}`, content: { case: "text", value: `react to this (round ${round_ + 1})` } },
        { headers: users[0]!.headers, timeoutMs: CALL_TIMEOUT_MS },
      );
      const seq = sent.message!.seq;
      await sleep(300); // let the message_created fan out before the storm
      seqOfRound = seq;
      seen[0]!.fill(0);
      seen[1]!.fill(0);
      maxCount[0] = 0n;
      maxCount[1] = 0n;
      const before = [perSubscriber[0]!.count, perSubscriber[1]!.count];
      issuedAt = new Float64Array(REACTORS);
      const callLatency = new Samples(REACTORS);
      let added = 0;
      firstEventAt = Infinity;
      lastEventAt = 0;
      let firstCallDone = Infinity;
      let lastCallDone = 0;
      const t0 = performance.now();
      const calls = users.map((_, i) => {
        issuedAt[i] = performance.now();
        return react[i]!(seq).then(
          (res) => {
            const now = performance.now();
            callLatency.add(now - issuedAt[i]!);
            firstCallDone = Math.min(firstCallDone, now);
            lastCallDone = Math.max(lastCallDone, now);
            if (res.added) added++;
          },
          (error: unknown) => errors.add(error, "addReaction"),
        );
      });
      const issueSpread = performance.now() - t0;
      await Promise.race([failed, Promise.all(calls)]);
      // Wait for every reaction_added on both subscribers (bounded).
      const deadline = performance.now() + DRAIN_MS;
      while (performance.now() < deadline && (perSubscriber[0]!.count - before[0]! < added || perSubscriber[1]!.count - before[1]! < added)) await sleep(20);
      // Missing events are infinitely late.
      let missing = 0;
      for (const s of [0, 1] as const) for (let i = 0; i < REACTORS; i++) if (!seen[s]![i]) missing++;
      const got = (s: 0 | 1) => perSubscriber[s]!.count - before[s]!;
      const own = roundBuffer(perSubscriber, before);
      for (let k = 0; k < missing; k++) own.add(Infinity);
      for (const v of own.sorted()) all.add(v);
      const finalCount = await finalReactionCount(env.db, conversationId, seq);
      const viaApi = await createClient(MessageService, toB[0]!.transport).getMessage({ conversationId, seq }, { headers: users[1]!.headers, timeoutMs: CALL_TIMEOUT_MS });
      const apiCount = viaApi.message?.reactions.find((r) => r.emoji === EMOJI)?.count ?? 0n;
      const roundExact = finalCount.rows === REACTORS && finalCount.counter === REACTORS && apiCount === BigInt(REACTORS) && maxCount[0] === BigInt(REACTORS) && maxCount[1] === BigInt(REACTORS) && added === REACTORS && missing === 0;
      exact &&= roundExact;
      const summary = own.summary();
      rounds.push({
        round: round_ + 1,
        seq: String(seq),
        addedTrue: added,
        eventsA: got(0),
        eventsB: got(1),
        missing,
        latencyMs: summary,
        callMs: callLatency.summary(),
        issueSpreadMs: round(issueSpread),
        timelineMs: { firstCallDone: round(firstCallDone - t0), lastCallDone: round(lastCallDone - t0), firstEvent: round(firstEventAt - t0), lastEvent: round(lastEventAt - t0) },
        finalCount: { rows: finalCount.rows, counter: finalCount.counter, api: Number(apiCount), lastEventA: Number(maxCount[0]), lastEventB: Number(maxCount[1]) },
        exact: roundExact,
      });
    }
    const cpu = meter.stop();
    await profileWindow.stop();
    const streamsLost = subscribers.filter((s) => !s.open).length;
    await closeStreams(subscribers);
    const latencyMs = all.summary();
    const ok = exact && errors.total === 0 && duplicates === 0 && streamsLost === 0;
    const summary = {
      config: { reactors: REACTORS, rounds: ROUNDS, emoji: EMOJI, client: SENDER_CLIENT, maxGroupMembers: Math.max(500, REACTORS), oneGroup: true, callsOn: "half on node a, half on node b", subscribers: "one on node a, one on node b" },
      latencyMs,
      recordedToEventMs: recordedToEvent.summary(),
      rounds,
      errors: errors.toJSON(),
      duplicates,
      unexpectedEvents: strangers,
      streamsEndedEarly: streamsLost,
      cpuCores: cpu,
      pgWaits: profileWindow.pgWaits,
      // Propagation is measured from the event's recording; issue→event adds the time the
      // burst of 1,000 calls queues for the nodes' CPU and the message's row lock.
      target: { p99Ms: 100, propagationMet: recordedToEvent.summary().p99 < 100, endToEndMet: latencyMs.p99 < 100 },
      ok,
    };
    const lines: [string, string][] = [];
    for (const r of rounds as any[]) {
      lines.push([`round ${r.round} issue→event ms`, `${formatLatency(r.latencyMs)}`]);
      lines.push([`        call ms`, `${formatLatency(r.callMs)}   (all ${REACTORS} calls issued within ${r.issueSpreadMs} ms)`]);
      lines.push([`        timeline ms`, `first call done ${r.timelineMs.firstCallDone}, last ${r.timelineMs.lastCallDone}; first event ${r.timelineMs.firstEvent}, last ${r.timelineMs.lastEvent} (after the first call was issued)`]);
      lines.push([`        final count`, `rows ${r.finalCount.rows}, counter ${r.finalCount.counter}, GetMessage ${r.finalCount.api}, last event count a ${r.finalCount.lastEventA} / b ${r.finalCount.lastEventB}, added=true ${r.addedTrue}, missing events ${r.missing}  => ${r.exact ? "exact" : "WRONG"}`]);
    }
    printBlock(`reactions  ${REACTORS} users of one group (MAX_GROUP_MEMBERS=${Math.max(500, REACTORS)}) react ${EMOJI} to one message at once (${SENDER_CLIENT} gRPC client), calls half on each node, a subscriber on each node, ${ROUNDS} rounds`, [
      ["issue→event ms", `${formatLatency(latencyMs)}   (all rounds, both subscribers)`],
      ["recorded→event ms", `${formatLatency(recordedToEvent.summary())}   (propagation: event recorded in the reaction's transaction → arrival)`],
      ...lines,
      ["errors", `${errors.total}${errors.total ? "  " + JSON.stringify(Object.fromEntries(errors.byCode)) + "  " + errors.samples.slice(0, 4).join(" | ") : ""}; duplicate events ${duplicates}; streams ended early ${streamsLost}`],
      ["cpu", formatCpu(cpu)],
      ...pgWaitRows(profileWindow.pgWaits),
      ["target", `reaction propagation (recorded→event) P99 < 100 ms and final count exact: ${summary.target.propagationMet && exact ? "MET" : "NOT MET"}; issue→event P99 < 100 ms: ${summary.target.endToEndMet ? "MET" : "NOT MET"}`],
    ]);
    return summary;
  } finally {
    closeConnections([...toA, ...toB]);
    await stop();
  }
}

/** The newest samples of both per-subscriber series since `before` (the current round). */
function roundBuffer(series: Samples[], before: number[]): Samples {
  const out = new Samples(2048);
  series.forEach((s, k) => {
    for (const v of s.tail(before[k]!)) out.add(v);
  });
  return out;
}

async function finalReactionCount(db: BenchDatabase, conversationId: string, seq: bigint) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const rows = await client.query(`select count(*)::int as n from message_reactions where conversation_id = $1 and seq = $2 and emoji = $3`, [conversationId, String(seq), EMOJI]);
    const counter = await client.query(`select count::int as n from message_reaction_counts where conversation_id = $1 and seq = $2 and emoji = $3`, [conversationId, String(seq), EMOJI]);
    return { rows: rows.rows[0].n as number, counter: (counter.rows[0]?.n as number | undefined) ?? 0 };
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------
// Scenario: idle streams

async function scenarioIdle(env: Env) {
  const inspectPorts = new Map<string, number>();
  const { nodes, failed, stop } = await startNodes(env, "idle", IDLE_NODES === 2 ? ["a", "b"] : ["a"], {}, async (label) => {
    if (!flags.gc) return [];
    inspectPorts.set(label, await freePort());
    return [`--inspect=127.0.0.1:${inspectPorts.get(label)}`];
  });
  const heartbeatSeconds = HEARTBEAT_SECONDS ?? 15;
  const target = Math.max(STREAMS, PUSH_TO);
  /** Stream k is on node k % nodes.length, on that node's connection ⌊(k / nodes.length) / PER_CONNECTION⌋. */
  const nodeOf = (k: number) => k % nodes.length;
  /** How many of the first n streams are on node i. */
  const streamsOn = (i: number, n: number) => Math.ceil((n - i) / nodes.length);
  const connections: Connection[][] = nodes.map(() => []);
  const streams: Stream[] = [];
  const inspectors = await Promise.all(nodes.map((n) => (flags.gc ? Inspector.connect(inspectPorts.get(n.label)!) : null)));
  onCleanup("close inspectors", () => inspectors.forEach((i) => i?.close()), { first: true });
  try {
    const users = await makeUsers(`fi-${RUN_ID}`, target);
    const setupConnections = nodes.flatMap((n) => grpcConnections(n.baseUrl, 4 / nodes.length));
    const t0 = performance.now();
    await Promise.race([failed, ensureUsers(users, setupConnections, 64)]);
    const getMeSeconds = (performance.now() - t0) / 1000;
    closeConnections(setupConnections);

    /** Every node's memory, read at the same time, each after a forced full GC (without --no-gc) and a settle pause. */
    const measure = async () => {
      await sleep(3000);
      return Promise.all(
        nodes.map(async (node, i) => {
          const inspector = inspectors[i] ?? null;
          const heap = inspector ? await inspector.gcAndHeap() : null;
          await sleep(2000);
          // What RSS is made of: the V8 heap the node holds (used + committed slack) and memory
          // outside it (Buffers' backing stores are "external"; the rest is native: nghttp2, malloc).
          const usage = inspector ? await inspector.memoryUsage() : null;
          return {
            rssKiB: rssKiB(node.pid)!,
            heapUsedKiB: heap ? Math.round(heap.usedBytes / 1024) : null,
            heapTotalKiB: heap ? Math.round(heap.totalBytes / 1024) : null,
            externalKiB: usage ? Math.round(usage.external / 1024) : null,
          };
        }),
      );
    };
    const baseline = await measure();
    const snapshotDir = flags["heap-snapshot"];
    const inspectorA = inspectors[0] ?? null;
    if (snapshotDir !== undefined && inspectorA) {
      mkdirSync(snapshotDir, { recursive: true });
      await inspectorA.heapSnapshot(path.join(snapshotDir, "baseline.heapsnapshot"));
    }
    type NodeStep = { streams: number; alive: number; open: number; rssKiB: number; heapUsedKiB: number | null; heapTotalKiB: number | null; externalKiB: number | null; kibPerStreamRss: number; kibPerStreamHeap: number | null; idleCpuCores: number };
    const steps: { streams: number; alive: number; open: number; idleCpuCores: { nats: number; machine: number; seconds: number }; openSeconds: number; failures: number; nodes: Record<string, NodeStep> }[] = [];
    let held = 0;
    let stopReason = "";
    const failures = new ErrorTally();

    const openUpTo = async (n: number) => {
      const started = performance.now();
      const from = streams.length;
      let failed = 0;
      const batch = users.slice(from, n);
      const client = (k: number) => {
        const onNode = connections[nodeOf(k)]!;
        const c = Math.floor(Math.floor(k / nodes.length) / PER_CONNECTION);
        while (onNode.length <= c) onNode.push(...grpcConnections(nodes[nodeOf(k)]!.baseUrl, 1));
        return createClient(EventService, onNode[c]!.transport);
      };
      await eachLimited(batch, 256, async (user, j) => {
        const k = from + j;
        const stream = new Stream(client(k), user, () => {});
        streams[k] = stream;
        try {
          await withTimeout(stream.caughtUp, 30_000, "not caught up");
        } catch (error) {
          failed++;
          failures.add(error, "subscribe");
        }
      });
      return { seconds: (performance.now() - started) / 1000, failed };
    };

    /** Per node: streams still open that received a heartbeat after this call (waits up to two heartbeat periods + 10 s). */
    const aliveAfterHeartbeat = async () => {
      const before = streams.map((s) => s.heartbeats);
      const deadline = performance.now() + (2 * heartbeatSeconds + 10) * 1000;
      let alive: number[] = [];
      let open: number[] = [];
      while (performance.now() < deadline) {
        alive = nodes.map(() => 0);
        open = nodes.map(() => 0);
        for (let k = 0; k < streams.length; k++) {
          if (!streams[k]!.open) continue;
          open[nodeOf(k)]!++;
          if (streams[k]!.heartbeats > before[k]!) alive[nodeOf(k)]!++;
        }
        if (sum(alive) === streams.length || sum(open) < streams.length) break;
        await sleep(250);
      }
      return { alive, open };
    };

    for (let goal = STREAMS; ; goal = Math.min(target, goal + PUSH_STEP)) {
      const opened = await Promise.race([failed, openUpTo(goal)]).catch((error: Error) => {
        stopReason = error.message.split("\n")[0]!;
        return null;
      });
      if (opened === null) break;
      const m = await measure();
      if (snapshotDir !== undefined && inspectorA && steps.length === 0) await inspectorA.heapSnapshot(path.join(snapshotDir, `streams-${streams.length}.heapsnapshot`));
      const idleStarted = performance.now();
      const idleMeter = new CpuMeter(cpuPids(nodes));
      const profiling = flags.profile && flags.gc && steps.length === 0;
      if (profiling) await Promise.all(inspectors.map((i) => i!.startProfile()));
      idleMeter.start();
      const { alive, open } = await aliveAfterHeartbeat();
      await sleep(Math.max(0, heartbeatSeconds * 1000 - (performance.now() - idleStarted)));
      const idleCpu = idleMeter.stop();
      if (profiling) {
        mkdirSync(PROFILE_DIR, { recursive: true });
        await Promise.all(inspectors.map((i, k) => i!.stopProfile(path.join(PROFILE_DIR, `idle-${nodes[k]!.label}-${streams.length}.cpuprofile`))));
      }
      const n = streams.length;
      const byNode: Record<string, NodeStep> = {};
      nodes.forEach((node, i) => {
        const on = streamsOn(i, n);
        const b = baseline[i]!;
        const mi = m[i]!;
        byNode[node.label] = {
          streams: on,
          alive: alive[i]!,
          open: open[i]!,
          ...mi,
          kibPerStreamRss: round((mi.rssKiB - b.rssKiB) / on, 2),
          kibPerStreamHeap: mi.heapUsedKiB === null || b.heapUsedKiB === null ? null : round((mi.heapUsedKiB - b.heapUsedKiB) / on, 2),
          idleCpuCores: idleCpu[`node${node.label.toUpperCase()}`] ?? NaN,
        };
      });
      steps.push({
        streams: n,
        alive: sum(alive),
        open: sum(open),
        idleCpuCores: { nats: idleCpu.nats ?? NaN, machine: idleCpu.machine, seconds: idleCpu.wallSeconds },
        openSeconds: round(opened.seconds),
        failures: opened.failed,
        nodes: byNode,
      });
      held = Math.max(held, sum(alive));
      if (sum(alive) < n || opened.failed > 0) {
        const ended = new Map<string, number>();
        for (const st of streams) if (st.ended !== null) ended.set(st.ended, (ended.get(st.ended) ?? 0) + 1);
        const perNode = nodes.length > 1 ? ` (${nodes.map((node, i) => `node ${node.label} ${streamsOn(i, n) - alive[i]!}`).join(", ")})` : "";
        stopReason = `${n - sum(alive)} of ${n} streams without a heartbeat within ${2 * heartbeatSeconds + 10} s${perNode}; ${n - sum(open)} ended (${[...ended].map(([k, v]) => `${v}× ${k}`).join(", ") || "none"}); ${opened.failed} failed to open`;
        break;
      }
      if (goal >= target) break;
    }
    const first = steps[0];
    const peak = Object.fromEntries(nodes.map((n) => [n.label, peakRssKiB(n.pid)]));
    const benchRssMiB = Math.round(process.memoryUsage().rss / 1024 / 1024);
    const benchPeakRssMiB = Math.round((peakRssKiB(process.pid) ?? NaN) / 1024);
    const closing = performance.now();
    await closeStreams(streams.filter(Boolean));
    const closeSeconds = (performance.now() - closing) / 1000;
    // Node a's figure keeps its meaning with --idle-nodes 1; with 2 the target must hold on each node.
    const perStream = first ? Math.max(...Object.values(first.nodes).map((s) => s.kibPerStreamRss)) : NaN;
    const ok = first !== undefined && first.alive === first.streams && first.streams === STREAMS;
    const summary = {
      config: { streams: STREAMS, idleNodes: nodes.length, pushTo: PUSH_TO, pushStep: PUSH_STEP, streamsPerConnection: PER_CONNECTION, connections: Object.fromEntries(nodes.map((n, i) => [n.label, connections[i]!.length])), heartbeatSeconds, forcedGc: flags.gc, users: target },
      baseline: Object.fromEntries(nodes.map((n, i) => [n.label, baseline[i]!])),
      steps,
      kibPerStream: perStream,
      mostStreamsHeld: held,
      stopReason: stopReason || null,
      nodePeakRssKiB: peak,
      benchRssMiB,
      benchPeakRssMiB,
      getMeSeconds: round(getMeSeconds),
      closeSeconds: round(closeSeconds),
      failures: failures.toJSON(),
      target: {
        kibPerStream: 20,
        met: perStream <= 20,
        ...(nodes.length === 2 && { twoNodeStreams: 50_000, twoNodeMet: held >= 50_000 }),
      },
      ok,
    };
    const where = nodes.length === 1 ? "on node a" : `spread evenly over nodes ${nodes.map((n) => n.label).join(" and ")}`;
    const mib = (kib: number | null) => ((kib ?? 0) / 1024).toFixed(1);
    printBlock(`idle  ${STREAMS} idle Subscribe streams ${where} (${PER_CONNECTION} per HTTP/2 connection), distinct users${PUSH_TO > STREAMS ? `, then pushed toward ${PUSH_TO} in steps of ${PUSH_STEP}` : ""}`, [
      ...nodes.map((n, i): [string, string] => {
        const b = baseline[i]!;
        return [`baseline${nodes.length > 1 ? ` ${n.label}` : ""}`, `RSS ${mib(b.rssKiB)} MiB${b.heapUsedKiB !== null ? `, V8 heap used ${mib(b.heapUsedKiB)} MiB of ${mib(b.heapTotalKiB)}, external ${mib(b.externalKiB)} MiB (after forced GC)` : ""}`];
      }),
      ["users", `${target} known through GetMe, ${round(getMeSeconds)} s`],
      ...steps.flatMap((s): [string, string][] => [
        [`${s.streams} streams`, `open ${s.open}, alive (heartbeat seen) ${s.alive}/${s.streams}; idle CPU ${Object.entries(s.nodes).map(([label, ns]) => `node ${label} ${ns.idleCpuCores}`).join(", ")}, nats ${s.idleCpuCores.nats} cores; opened in ${s.openSeconds} s${s.failures ? `; ${s.failures} failed` : ""}`],
        ...Object.entries(s.nodes).map(([label, ns]): [string, string] => [
          `  node ${label}`,
          `${ns.streams} streams: RSS ${mib(ns.rssKiB)} MiB → ${ns.kibPerStreamRss} KiB/stream${ns.kibPerStreamHeap !== null ? `; V8 heap ${mib(ns.heapUsedKiB)} MiB → ${ns.kibPerStreamHeap} KiB/stream (heap total ${mib(ns.heapTotalKiB)} MiB, external ${mib(ns.externalKiB)} MiB)` : ""}; open ${ns.open}, alive ${ns.alive}/${ns.streams}`,
        ]),
      ]),
      ["most held", `${held} concurrent streams${stopReason ? ` (stopped: ${stopReason})` : PUSH_TO > STREAMS ? " (reached --push-to)" : ""}; node peak RSS ${nodes.map((n) => `${n.label} ${peak[n.label] !== null ? mib(peak[n.label]!) : "?"} MiB`).join(", ")}; load generator RSS ${benchRssMiB} MiB, peak ${benchPeakRssMiB} MiB (not the server's)`],
      ["target", `<= 20 KiB per idle stream at ${STREAMS}${nodes.length > 1 ? " (on each node)" : ""}: ${summary.target.met ? "MET" : "NOT MET"} (${perStream} KiB)`],
      ...(nodes.length === 2 ? [["target", `50,000 concurrent streams across two nodes, a heartbeat seen on every one: ${summary.target.twoNodeMet ? "MET" : "NOT MET"} (${held} held)`] as [string, string]] : []),
    ]);
    return summary;
  } finally {
    inspectors.forEach((i) => i?.close());
    closeConnections(connections.flat());
    await stop();
  }
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------------------------------
// Output

function pgWaitRows(waits: Record<string, string> | null): [string, string][] {
  if (!waits) return [];
  return [["pg backends", Object.entries(waits).map(([k, v]) => `${k} ${v}`).join("; ")]];
}

function printBlock(title: string, rows: [string, string][]): void {
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  console.log(["", `== bench:feed ${title}`, ...rows.map(([k, v]) => `   ${k.padEnd(width)} ${v}`), ""].join("\n"));
}

// ---------------------------------------------------------------------------------------
// Main

async function main(): Promise<boolean> {
  const busyBefore = await busyCores(1000);
  const db = await createBenchDatabase(ADMIN_URL);
  const natsPrefix = natsPrefixForRun(NATS_URL);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "parley-feed-"));
  onCleanup("remove data dir", () => rmSync(dataDir, { recursive: true, force: true }));
  const env: Env = { db, natsPrefix, dataDir };
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version, postgres: await postgresVersion(ADMIN_URL), busyCoresBeforeRun: busyBefore };
  console.log(`bench:feed run ${RUN_ID}: database ${db.name}, NATS prefix ${natsPrefix}; ${machine.cpus} × ${machine.cpuModel}; node ${machine.node}; ${machine.postgres}`);
  if (busyBefore > 0.3) console.log(`WARNING: the machine was not quiet: ${busyBefore} of ${machine.cpus} cores busy just before the run (other workloads skew every figure)`);
  if (flags.profile) console.log(`node CPU profiles go to ${PROFILE_DIR}/<scenario>-<node>.cpuprofile`);

  const results: Record<string, unknown> = {};
  let allOk = true;
  for (const scenario of RUN) {
    const busy = await busyCores(500);
    try {
      const result =
        scenario === "pairs" ? await scenarioPairs(env) : scenario === "group" ? await scenarioGroup(env) : scenario === "reactions" ? await scenarioReactions(env) : await scenarioIdle(env);
      results[scenario] = { busyCoresBefore: busy, ...result };
      allOk &&= result.ok;
      if (busy > 0.3) console.log(`   (noise: ${busy} cores were busy with other work just before this scenario)`);
    } catch (error) {
      allOk = false;
      const message = String((error as Error).message ?? error);
      results[scenario] = { error: message.length > 500 ? message.slice(0, 500) + "…" : message };
      const stack = String((error as Error).stack ?? error);
      console.error(`bench: scenario ${scenario} failed: ${stack.length > 2000 ? stack.slice(0, 2000) + "…" : stack}`);
    }
  }
  const summary = { bench: "feed", runId: RUN_ID, machine, scenarios: results, ok: allOk };
  if (flags.json !== undefined) writeFileSync(flags.json, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary, (_, v) => (typeof v === "bigint" ? v.toString() : v === Infinity ? "Infinity" : v)));
  return allOk;
}

await runBench(main, WATCHDOG_MS);
