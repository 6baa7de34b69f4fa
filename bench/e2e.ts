/**
 * `npm run bench:e2e -- [--members 500] [--seconds 10] [--skip crypto,removal,send] ...`
 *
 * What end-to-end encryption costs, in three sections (each can be skipped):
 *
 *   crypto   The SDK's constructions, in this process, no server: the functions of
 *            src/client/crypto called directly (not the key manager, so no store, cache or
 *            network: the construction alone). A ~100-byte text:
 *              DIRECT  sealDirect with the message key boxed to 3 devices (2 of the peer + the
 *                      sender's own other device); opened on one device (its key box + body).
 *              GROUP   sealGroup with a sender-key chain (secretbox + Ed25519 signature, the
 *                      chain advanced); opened on one receiver (signature, chain, body). The
 *                      cost does not depend on the group's size (500 or 5): that is the point
 *                      of sender keys; the size shows in the key distribution (section removal).
 *            Plus the primitives the key distribution is made of (to-device seal/open, Ed25519
 *            verify of a device or prekey signature), and a rotation's crypto: --members - 1
 *            claimed prekeys verified and sealed to. Each run for --crypto-ms (default 1500)
 *            after a short warm-up, once with the public-key work on WebCrypto (what the SDK
 *            uses where the platform has it) and once forced onto tweetnacl, in the same run.
 *
 *   removal  Removal from an encrypted group of --members (default 500), against one Parley
 *            node (src/main.ts as a child process) on a fresh PostgreSQL database and NATS
 *            prefix. Every user has one device with a real key manager (E2EKeyManager, the SDK's
 *            MessageCodec) on a memory store; devices are registered through it, split over
 *            --register-workers worker threads, --register-concurrency at a time in each.
 *            Member 0 creates the group and sends once (distributing its sender key at epoch 1);
 *            every other member holds an EventService.Subscribe stream and handles its feed
 *            as the SDK would (to_device_message / member_removed → codec.onEvent,
 *            message_created → codec.decrypt). Then rounds, each: RemoveMember of one member,
 *            every remaining member handles member_removed, then member 0 sends again:
 *              sender   client CPU (process.cpuUsage delta) and wall time of codec.encrypt +
 *                       SendMessage, broken down by the RPCs the key manager makes (timed by a
 *                       transport interceptor) and the work between them: listing members and
 *                       devices (+ verifying each device's signed box key), claiming prekeys,
 *                       verifying the prekeys and sealing one to-device payload per device,
 *                       SendToDevice, sealing the message. Target: < 250 ms of client CPU.
 *                       The members' streams are parsed by this process meanwhile (their
 *                       handling waits until the send returned), which the CPU figure includes.
 *              round 1  members handle their events concurrently, all in this process: wall
 *                       time from the send until the last member decrypted the message
 *                       (target: 2 s end to end; here N simulated devices share this
 *                       process's one thread, so it is an upper bound).
 *              round 2  members handle their events one member at a time: each member's CPU
 *                       (key install + decrypt, the RPCs the SDK makes on the way included) is
 *                       measured alone; and the delivery latency (the event's created_at,
 *                       when the server committed it, → the event on the member's stream, for
 *                       to_device_message and message_created; one machine, one clock) is
 *                       little disturbed by the members' work. What one real device
 *                       experiences ≈ delivery latency + its own CPU + its RPCs: the bench
 *                       adds the sender's wall time, the key delivery P99 and the member
 *                       handling P99 and holds that against the 2 s target.
 *              round 3  the members' streams closed, one more removal and send: the sender
 *                       alone in this process, so its client CPU is its own.
 *            Client CPU is process.cpuUsage (every thread of this process, GC helpers
 *            included); the main thread's own share is printed beside it.
 *            --cpu-prof FILE writes a V8 CPU profile of round 1's send and prints where its
 *            time went.
 *
 *   send     The server's cost of an encrypted send against a plain one: bench/send.ts run as
 *            child processes back to back (each on its own fresh database): plain, --encrypted,
 *            --encrypted --search-tokens 8; the same senders, conversations and --seconds.
 *            Reports server and PostgreSQL CPU ms per message and msg/s of each, and the
 *            ratios to plain. Target: encrypted within 10 % of plain.
 *
 * Flags: --members N (default 500)   --seconds S (send section, default 10)
 *        --skip LIST (comma-separated: crypto, removal, send)
 *        --register-workers W (default: one per CPU)   --register-concurrency C (default 8)
 *        --crypto-ms MS (default 1500)   --send-senders (default 64)   --send-conversations (default 100)
 *        --cpu-prof FILE   --database-url URL (default postgres://postgres@127.0.0.1:5432/postgres)
 *        --nats-url URL (default nats://127.0.0.1:4222)   --server-env K=V (repeatable)   --json FILE
 * Everything is bounded (per-call deadlines, per-wait deadlines, a watchdog) and stays on
 * 127.0.0.1; the node, the database, the NATS streams, the workers and child benches are
 * gone at the end even on failure or Ctrl-C. The last line of stdout is the JSON summary.
 */
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { create } from "@bufbuild/protobuf";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { PlainContentSchema, SenderKeyDistributionSchema, ToDevicePayloadSchema, type PlainContent } from "../gen/parley/e2e/v1/payload_pb.ts";
import { ConversationType, type Conversation } from "../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import type { Event } from "../gen/parley/v1/event_pb.ts";
import type { EncryptedEnvelope, Message } from "../gen/parley/v1/message_pb.ts";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { withBearerToken } from "../src/client/bearer-transport.ts";
import {
  createDeviceKeys,
  createPrekey,
  createSenderKey,
  DecryptError,
  openDirectBody,
  openDirectMessageKey,
  openGroup,
  openToDevice,
  readDirectCiphertext,
  readGroupCiphertext,
  receiverChainFrom,
  sealDirect,
  sealGroup,
  sealToDevice,
  setPrimitivesBackend,
  primitivesBackend,
  signDetached,
  verifyPrekey,
  type SealedToDevice,
  type ReceiverChain,
} from "../src/client/crypto/index.ts";
import { E2EKeyManager } from "../src/client/e2e/index.ts";
import { MemoryStore } from "../src/client/storage.ts";
import { summarizeProfile } from "./lib/cpuprofile.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { postgresVersion } from "./lib/database.ts";
import type { RegisteredDevice, RegisterJob } from "./lib/e2e-device-worker.ts";
import { grpcConnections } from "./lib/grpc.ts";
import { busyCores, cpuByComm, procCpu, ZERO, type Cpu } from "./lib/proc.ts";
import { ROOT, startSingleNodeRun } from "./lib/server.ts";
import { formatLatency, Samples, type LatencySummary } from "./lib/stats.ts";
import { closeStreams, ensureUsers, openStreams, withTimeout, type Stream, type User } from "./lib/traffic.ts";
import { eachLimited, intFlag, keyValues, printHelp, requireLocalUrl, round, SERVICE_FLAGS, sleep } from "./lib/util.ts";

const { values: flags } = parseArgs({
  options: {
    members: { type: "string", default: "500" },
    seconds: { type: "string", default: "10" },
    skip: { type: "string", default: "" },
    "register-workers": { type: "string", default: String(Math.max(1, os.cpus().length)) },
    "register-concurrency": { type: "string", default: "8" },
    "crypto-ms": { type: "string", default: "1500" },
    "send-senders": { type: "string", default: "64" },
    "send-conversations": { type: "string", default: "100" },
    "cpu-prof": { type: "string" },
    ...SERVICE_FLAGS,
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}
const MEMBERS = intFlag("members", flags.members, 4, 2000);
const SECONDS = intFlag("seconds", flags.seconds, 1, 600);
const REGISTER_WORKERS = intFlag("register-workers", flags["register-workers"], 1, 16);
const REGISTER_CONCURRENCY = intFlag("register-concurrency", flags["register-concurrency"], 1, 64);
const CRYPTO_MS = intFlag("crypto-ms", flags["crypto-ms"], 50, 60_000);
const SEND_SENDERS = intFlag("send-senders", flags["send-senders"], 1, 10_000);
const SEND_CONVERSATIONS = intFlag("send-conversations", flags["send-conversations"], 1, 100_000);
const SECTIONS = ["crypto", "removal", "send"] as const;
const SKIP = new Set(flags.skip.split(",").map((s) => s.trim()).filter(Boolean));
for (const s of SKIP) {
  if (!(SECTIONS as readonly string[]).includes(s)) {
    console.error(`bench: --skip takes ${SECTIONS.join(", ")}; got "${s}"`);
    process.exit(2);
  }
}
const ADMIN_URL = flags["database-url"];
const NATS_URL = flags["nats-url"];
requireLocalUrl("database-url", ADMIN_URL);
requireLocalUrl("nats-url", NATS_URL);

const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const SECRET = randomBytes(32).toString("base64url");
const CALL_TIMEOUT_MS = 30_000;
const RPC_CONNECTIONS = 8;
const STREAM_CONNECTIONS = 8;
/** The sender's target for a send after a removal (OpenMLS publishes ~257 ms for a remove at 500). */
const SENDER_CPU_TARGET_MS = 250;
/** End to end: every remaining member can read the message within this. */
const READ_TARGET_MS = 2000;
/** Upper bound of any one wait for members (fan-out, handling) in the removal section. */
const waitMs = (members: number) => Math.max(30_000, members * 200);
/** A ~100-byte text. */
const TEXT = "bench:e2e — the quarterly numbers are in, see the attached sheet before Thursday's call, thanks!";

const usNow = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

// ---------------------------------------------------------------------------------------
// Section 1: the constructions, in process

interface OpRate {
  ops: number;
  opsPerSecond: number;
  usPerOp: number;
}

/** Runs fn (given its iteration number) for ms after a warm-up; stops early when fn returns false. */
async function timeOps(ms: number, fn: (i: number) => Promise<boolean | void>): Promise<OpRate> {
  for (let i = 0; i < 5; i++) if ((await fn(-1 - i)) === false) break;
  let ops = 0;
  const started = performance.now();
  let elapsed = 0;
  for (;;) {
    if ((await fn(ops)) === false) break;
    ops++;
    if ((ops & 7) === 0) {
      elapsed = performance.now() - started;
      if (elapsed >= ms) break;
    }
  }
  elapsed = performance.now() - started;
  return { ops, opsPerSecond: round((ops * 1000) / elapsed, 1), usPerOp: round((elapsed * 1000) / Math.max(1, ops), 1) };
}

/** The section on each public-key backend the SDK has: WebCrypto (what it uses where it can) and tweetnacl. */
async function cryptoSection() {
  const detected = await primitivesBackend();
  const webcrypto = await cryptoOnBackend();
  setPrimitivesBackend("tweetnacl");
  const tweetnacl = await cryptoOnBackend();
  setPrimitivesBackend("auto");
  return { detected, textBytes: Buffer.byteLength(TEXT), webcrypto, tweetnacl };
}

async function cryptoOnBackend() {
  const content: PlainContent = create(PlainContentSchema, { text: TEXT });
  const sender = createDeviceKeys();
  const devices = Array.from({ length: 3 }, (_, i) => ({ deviceId: `device-${i}`, keys: createDeviceKeys() }));
  const recipients = devices.map((d) => ({ deviceId: d.deviceId, boxPublicKey: d.keys.box.publicKey }));
  const reader = devices[0]!;

  // DIRECT: encrypt makes the envelopes that decrypt then opens (each opened once).
  const direct: EncryptedEnvelope[] = [];
  const directEncrypt = await timeOps(CRYPTO_MS, async (i) => {
    const { envelope } = await sealDirect({ content, conversationId: "bench", senderDeviceId: "sender", senderBoxSecretKey: sender.box.secretKey, recipients, keyEpoch: 1 });
    if (i >= 0) direct.push(envelope);
  });
  const directDecrypt = await timeOps(CRYPTO_MS, async (i) => {
    const envelope = direct[i < 0 ? 0 : i];
    if (envelope === undefined) return false;
    const ciphertext = readDirectCiphertext(envelope);
    const key = await openDirectMessageKey(ciphertext, { deviceId: reader.deviceId, boxSecretKey: reader.keys.box.secretKey }, sender.box.publicKey);
    if (openDirectBody(envelope, ciphertext, key, "bench").text !== TEXT) throw new Error("DIRECT round trip failed");
  });

  // GROUP: one sender key chain; the receiver opens the envelopes in order, advancing its chain.
  const conversationId = randomUUID();
  const first = createSenderKey();
  let senderKey = first;
  const group: EncryptedEnvelope[] = [];
  const groupEncrypt = await timeOps(CRYPTO_MS, async () => {
    const sealed = await sealGroup({ content, conversationId, keyEpoch: 1, senderDeviceId: "sender", signingSecretKey: sender.signing.secretKey, senderKey });
    senderKey = sealed.nextSenderKey;
    group.push(sealed.envelope);
  });
  let chain: ReceiverChain = receiverChainFrom(first.index, first.chainKey);
  let next = 0;
  const groupDecrypt = await timeOps(CRYPTO_MS, async () => {
    const envelope = group[next++];
    if (envelope === undefined) return false;
    const opened = await openGroup(envelope, readGroupCiphertext(envelope), conversationId, chain, sender.signing.publicKey);
    chain = opened.nextChain;
    if (opened.content.text !== TEXT) throw new Error("GROUP round trip failed");
  });

  // The pieces a key distribution is made of, and a whole one: the sender's crypto after a
  // removal from a MEMBERS group (every other member's claimed prekey verified and sealed to).
  const distribution = create(ToDevicePayloadSchema, {
    kind: { case: "senderKey", value: create(SenderKeyDistributionSchema, { conversationId, keyEpoch: 1, senderKeyId: first.id, index: 0, chainKey: first.chainKey }) },
  });
  const prekey = await createPrekey(1, reader.keys.signing.secretKey);
  const sealedPayloads: SealedToDevice[] = [];
  const toDeviceSeal = await timeOps(CRYPTO_MS / 3, async () => {
    sealedPayloads.push(await sealToDevice(distribution, sender.box.secretKey, { boxPublicKey: reader.keys.box.publicKey, prekey }));
  });
  let opened = 0;
  const toDeviceOpen = await timeOps(CRYPTO_MS / 3, async () => {
    const sealed = sealedPayloads[opened++];
    if (sealed === undefined) return false;
    await openToDevice(sealed, sender.box.publicKey, prekey.secretKey);
  });
  const signatureVerify = await timeOps(CRYPTO_MS / 3, async () => {
    if (!(await verifyPrekey(prekey, reader.keys.signing.publicKey))) throw new Error("prekey does not verify");
  });
  const signatureSign = await timeOps(CRYPTO_MS / 3, async () => void (await signDetached(prekey.publicKey, sender.signing.secretKey)));
  const others = await Promise.all(
    Array.from({ length: MEMBERS - 1 }, async (_, i) => {
      const keys = createDeviceKeys();
      return { keys, prekey: await createPrekey(i + 1, keys.signing.secretKey) };
    }),
  );
  const distributionMs: number[] = [];
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    await Promise.all(
      others.map(async ({ keys, prekey: claimed }) => {
        if (!(await verifyPrekey(claimed, keys.signing.publicKey))) throw new Error("a prekey did not verify");
        await sealToDevice(distribution, sender.box.secretKey, { boxPublicKey: keys.box.publicKey, prekey: claimed });
      }),
    );
    distributionMs.push(performance.now() - started);
  }
  const envelopeBytes = (e: EncryptedEnvelope | undefined) => (e === undefined ? 0 : e.ciphertext.length + e.nonce.length);
  return {
    direct: { recipientDevices: recipients.length, encrypt: directEncrypt, decrypt: directDecrypt, envelopeBytes: envelopeBytes(direct[0]) },
    group: { groupMembers: MEMBERS, encrypt: groupEncrypt, decrypt: groupDecrypt, envelopeBytes: envelopeBytes(group[0]) },
    primitives: { toDeviceSeal, toDeviceOpen, ed25519Verify: signatureVerify, ed25519Sign: signatureSign },
    distribution: { devices: others.length, medianMs: round([...distributionMs].sort((a, b) => a - b)[1]!, 1) },
  };
}

function printCrypto(c: Awaited<ReturnType<typeof cryptoSection>>): void {
  const row = (label: string, fast: OpRate, slow: OpRate) =>
    `   ${label.padEnd(52)} ${String(fast.usPerOp).padStart(9)} µs ${String(slow.usPerOp).padStart(10)} µs   ${String(round(slow.usPerOp / fast.usPerOp, 1)).padStart(5)}×`;
  const { webcrypto: w, tweetnacl: t } = c;
  console.log(
    [
      "",
      `== crypto: src/client/crypto called directly, a ${c.textBytes}-byte text; public-key work on WebCrypto (detected: ${c.detected}) vs tweetnacl, same run`,
      `   ${"per operation".padEnd(52)} ${"webcrypto".padStart(12)} ${"tweetnacl".padStart(13)}   speed-up`,
      row(`DIRECT encrypt (key boxed to ${w.direct.recipientDevices} devices)`, w.direct.encrypt, t.direct.encrypt),
      row("DIRECT decrypt (one device)", w.direct.decrypt, t.direct.decrypt),
      row(`GROUP encrypt (sender key; size-independent)`, w.group.encrypt, t.group.encrypt),
      row("GROUP decrypt (one receiver)", w.group.decrypt, t.group.decrypt),
      row("to-device seal (SenderKeyDistribution, X25519 box)", w.primitives.toDeviceSeal, t.primitives.toDeviceSeal),
      row("to-device open", w.primitives.toDeviceOpen, t.primitives.toDeviceOpen),
      row("Ed25519 verify (device box key / prekey signature)", w.primitives.ed25519Verify, t.primitives.ed25519Verify),
      row("Ed25519 sign", w.primitives.ed25519Sign, t.primitives.ed25519Sign),
      `   a rotation's crypto: ${w.distribution.devices} claimed prekeys verified + sealed   ${w.distribution.medianMs} ms (webcrypto)   ${t.distribution.medianMs} ms (tweetnacl)`,
      `   envelope bytes: DIRECT ${w.direct.envelopeBytes}, GROUP ${w.group.envelopeBytes}`,
    ].join("\n"),
  );
}

// ---------------------------------------------------------------------------------------
// Section 2: removal from a large encrypted group

/** One RPC of the sender's key manager, timed by the interceptor. */
interface RpcTrace {
  method: string;
  start: number;
  end: number;
  cpuStartUs: number;
  cpuEndUs: number;
}

/** Records the sender's RPCs while `on`. */
class RpcTracer {
  on = false;
  readonly calls: RpcTrace[] = [];
  readonly interceptor: Interceptor = (next) => async (req) => {
    if (!this.on) return next(req);
    const trace: RpcTrace = { method: req.method.name, start: performance.now(), end: 0, cpuStartUs: usNow(), cpuEndUs: 0 };
    try {
      return await next(req);
    } finally {
      trace.end = performance.now();
      trace.cpuEndUs = usNow();
      this.calls.push(trace);
    }
  };
}

/** What happened between consecutive points of the sender's send. */
const PHASE_NAMES: Record<string, string> = {
  "before ListMembers": "load key state",
  "rpc ListMembers": "ListMembers RPC",
  "after ListMembers": "between ListMembers and ListDevices",
  "rpc ListDevices": "ListDevices RPC",
  "after ListDevices": "verify each device's signed box key (Ed25519)",
  "rpc ClaimPrekeys": "ClaimPrekeys RPC",
  "after ClaimPrekeys": "verify claimed prekeys (Ed25519) + seal a to-device payload per device (X25519 box)",
  "rpc SendToDevice": "SendToDevice RPC",
  "after SendToDevice": "store the distribution, seal the message (secretbox + Ed25519 sign)",
  "rpc SendMessage": "SendMessage RPC",
};

interface Phase {
  phase: string;
  what: string;
  wallMs: number;
  cpuMs: number;
}

/** Splits a send into RPCs and the work between them. */
function phasesOf(start: { at: number; cpuUs: number }, calls: readonly RpcTrace[], end: { at: number; cpuUs: number }): Phase[] {
  const phases: Phase[] = [];
  let previous = "start";
  let at = start.at;
  let cpu = start.cpuUs;
  const push = (phase: string, toAt: number, toCpu: number) => {
    if (toAt - at > 0.0005 || toCpu - cpu > 0) phases.push({ phase, what: PHASE_NAMES[phase] ?? phase, wallMs: round(toAt - at), cpuMs: round((toCpu - cpu) / 1000) });
    at = toAt;
    cpu = toCpu;
  };
  for (const call of calls) {
    push(previous === "start" ? `before ${call.method}` : `after ${previous}`, call.start, call.cpuStartUs);
    push(`rpc ${call.method}`, call.end, call.cpuEndUs);
    previous = call.method;
  }
  push(`after ${previous}`, end.at, end.cpuUs);
  // The same RPC can come twice (a second ListDevices page): merge by phase name, in order.
  const merged = new Map<string, Phase>();
  for (const p of phases) {
    const m = merged.get(p.phase);
    if (m) {
      m.wallMs = round(m.wallMs + p.wallMs);
      m.cpuMs = round(m.cpuMs + p.cpuMs);
    } else merged.set(p.phase, { ...p });
  }
  return [...merged.values()];
}

/** One simulated member: its device's key manager, its stream, and what it saw this round. */
interface Member {
  index: number;
  user: User;
  codec: E2EKeyManager;
  active: boolean;
  /** Handles this member's events in order. */
  chain: Promise<void>;
  /** A message that did not open yet (its key had not arrived); retried after the next key. */
  pending: Message | null;
  errors: string[];
  round: MemberRound;
}

interface MemberRound {
  memberRemovedHandled: boolean;
  toDeviceAt: number;
  messageAt: number;
  /** Event on the member's stream minus the event's created_at (when the server committed it). */
  toDeviceDeliveryMs: number;
  messageDeliveryMs: number;
  decryptedAt: number;
  cpuUs: number;
  handlingMs: number;
}
const freshRound = (): MemberRound => ({ memberRemovedHandled: false, toDeviceAt: NaN, messageAt: NaN, toDeviceDeliveryMs: NaN, messageDeliveryMs: NaN, decryptedAt: NaN, cpuUs: 0, handlingMs: 0 });

/** Registers a device per user over worker threads; returns each device's store entries. */
async function registerDevices(baseUrl: string, users: ReadonlyArray<{ userId: string; token: string }>): Promise<Map<string, RegisteredDevice>> {
  const devices = new Map<string, RegisteredDevice>();
  const workers = Math.min(REGISTER_WORKERS, users.length);
  const started = performance.now();
  let lastReport = started;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const job: RegisterJob = { baseUrl, users: users.filter((_, i) => i % workers === w), concurrency: REGISTER_CONCURRENCY, callTimeoutMs: CALL_TIMEOUT_MS };
      const worker = new Worker(new URL("./lib/e2e-device-worker.ts", import.meta.url), { workerData: job });
      const unregister = onCleanup(`stop registration worker ${w}`, async () => void (await worker.terminate()), { first: true });
      try {
        await new Promise<void>((resolve, reject) => {
          worker.on("message", (device: RegisteredDevice) => {
            devices.set(device.userId, device);
            if (performance.now() - lastReport > 10_000) {
              lastReport = performance.now();
              console.log(`   … ${devices.size}/${users.length} devices registered in ${round((lastReport - started) / 1000, 1)} s`);
            }
          });
          worker.once("error", reject);
          worker.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`registration worker ${w} exited with code ${code}`))));
        });
      } finally {
        await unregister();
      }
    }),
  );
  if (devices.size !== users.length) throw new Error(`registered ${devices.size} of ${users.length} devices`);
  return devices;
}

async function removalSection() {
  const { database, node, logFile } = await startSingleNodeRun("e2e", {
    adminUrl: ADMIN_URL,
    natsUrl: NATS_URL,
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    env: { ...keyValues(flags["server-env"], "server-env"), MAX_GROUP_MEMBERS: String(Math.max(500, MEMBERS)) },
  });
  const postgres = await postgresVersion(database.url);
  console.log(`\n== removal: ${MEMBERS}-member encrypted group; node pid ${node.pid} on ${postgres}, its log in ${logFile}`);
  const run = (async () => {
    const runId = randomBytes(3).toString("hex");
    const userIds = Array.from({ length: MEMBERS }, (_, i) => `e2e-${runId}-${i}`);
    const tokens = await Promise.all(userIds.map((userId) => mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId, expiresIn: "2h" })));
    const users: User[] = userIds.map((id, i) => ({ id, headers: { authorization: `Bearer ${tokens[i]}` } }));

    // RPC connections with a deadline on every call; streams on their own connections.
    const rpcManagers = Array.from({ length: RPC_CONNECTIONS }, () => new Http2SessionManager(node.baseUrl));
    onCleanup("close RPC connections", () => rpcManagers.forEach((m) => m.abort()), { first: true });
    const rpc = rpcManagers.map((sessionManager) => createGrpcTransport({ baseUrl: node.baseUrl, sessionManager, defaultTimeoutMs: CALL_TIMEOUT_MS }));
    const tracer = new RpcTracer();
    const senderManager = new Http2SessionManager(node.baseUrl);
    onCleanup("close the sender's connection", () => senderManager.abort(), { first: true });
    const senderTransport = createGrpcTransport({ baseUrl: node.baseUrl, sessionManager: senderManager, defaultTimeoutMs: CALL_TIMEOUT_MS, interceptors: [tracer.interceptor] });
    const transportOf = (i: number): Transport => withBearerToken(i === 0 ? senderTransport : rpc[i % rpc.length]!, () => tokens[i]!);

    const setupStarted = performance.now();
    await ensureUsers(users, grpcConnections(node.baseUrl, 2), CALL_TIMEOUT_MS, 32);
    const registered = await registerDevices(node.baseUrl, userIds.map((userId, i) => ({ userId, token: tokens[i]! })));
    const registerSeconds = round((performance.now() - setupStarted) / 1000, 1);
    console.log(`   ${MEMBERS} users, one device each, registered through E2EKeyManager.open in ${registerSeconds} s (${REGISTER_WORKERS} workers × ${REGISTER_CONCURRENCY})`);

    // Each device opened again on this thread from the store the worker filled.
    const members: Member[] = new Array(MEMBERS);
    await eachLimited(userIds, 16, async (userId, i) => {
      const store = new MemoryStore();
      for (const [key, value] of registered.get(userId)!.entries) await store.put(key, value);
      const errors: string[] = [];
      const codec = await E2EKeyManager.open({ store, transport: transportOf(i), userId, deviceName: "bench:e2e", onError: (e) => void (errors.length < 5 && errors.push(String(e))) });
      members[i] = { index: i, user: users[i]!, codec, active: true, chain: Promise.resolve(), pending: null, errors, round: freshRound() };
    });
    const sender = members[0]!;
    const senderConversations = createClient(ConversationService, transportOf(0));
    const senderMessages = createClient(MessageService, transportOf(0));

    // The group: the creator plus up to 499 at creation, the rest added.
    const others = userIds.slice(1);
    let conversation = (await senderConversations.createConversation({ type: ConversationType.GROUP, name: "bench:e2e", memberIds: others.slice(0, 499), encrypted: true })).conversation!;
    for (let k = 499; k < others.length; k += 100) await senderConversations.addMembers({ conversationId: conversation.id, userIds: others.slice(k, k + 100) });
    conversation = (await senderConversations.getConversation({ conversationId: conversation.id })).conversation!;

    // Member handling, as the SDK's session layer drives the codec.
    let gate: Promise<void> = Promise.resolve();
    let serial: Promise<void> | null = null;
    let expectedText = "";
    let current: Conversation = conversation;
    const enqueue = (member: Member, task: () => Promise<void>) => {
      const run = async () => {
        await gate;
        const cpu0 = usNow();
        const t0 = performance.now();
        try {
          await task();
        } catch (error) {
          if (member.errors.length < 5) member.errors.push(String(error));
        }
        member.round.cpuUs += usNow() - cpu0;
        member.round.handlingMs += performance.now() - t0;
      };
      if (serial !== null) {
        const job = serial.then(run);
        serial = job;
        member.chain = member.chain.then(() => job);
      } else member.chain = member.chain.then(run);
    };
    const tryDecrypt = async (member: Member, message: Message) => {
      try {
        const content = await member.codec.decrypt(current, message);
        if (content.text !== expectedText) throw new Error(`member ${member.index} read "${content.text.slice(0, 30)}…", not the text sent`);
        member.pending = null;
        member.round.decryptedAt = performance.now();
      } catch (error) {
        if (error instanceof DecryptError && (error.reason === "unknown_key" || error.reason === "stale_epoch")) member.pending = message;
        else throw error;
      }
    };
    const sinceCommitted = (event: Event, at: number) =>
      event.createdAt === undefined ? NaN : performance.timeOrigin + at - (Number(event.createdAt.seconds) * 1000 + event.createdAt.nanos / 1e6);
    const onEvent = (event: Event, at: number, index: number) => {
      const member = members[index]!;
      if (!member.active) return;
      switch (event.kind.case) {
        case "toDeviceMessage":
          if (!(member.round.toDeviceAt <= at)) {
            member.round.toDeviceAt = at; // the first one counts
            member.round.toDeviceDeliveryMs = sinceCommitted(event, at);
          }
          enqueue(member, async () => {
            await member.codec.onEvent(event);
            if (member.pending !== null) await tryDecrypt(member, member.pending);
          });
          return;
        case "messageCreated": {
          const message = event.kind.value.message;
          if (message === undefined || message.senderId === member.user.id) return;
          member.round.messageAt = at;
          member.round.messageDeliveryMs = sinceCommitted(event, at);
          enqueue(member, () => tryDecrypt(member, message));
          return;
        }
        case "memberRemoved":
          enqueue(member, async () => {
            await member.codec.onEvent(event);
            member.round.memberRemovedHandled = true;
          });
          return;
        case "memberAdded":
        case "deviceChanged":
          enqueue(member, () => member.codec.onEvent(event));
          return;
        default:
          return;
      }
    };
    const streams: Stream[] = await openStreams(users.slice(1), grpcConnections(node.baseUrl, STREAM_CONNECTIONS), (event, at, i) => onEvent(event, at, i + 1), 0, 64);
    onCleanup("close the members' streams", () => closeStreams(streams), { first: true });
    await Promise.all(members.slice(1).map((m) => m.codec.syncInbox()));
    const readers = () => members.filter((m) => m.index !== 0 && m.active);

    const waitFor = async (what: string, done: () => boolean, ms: number) => {
      const deadline = performance.now() + ms;
      while (!done()) {
        if (performance.now() > deadline) throw new Error(`${what}: not done after ${ms} ms`);
        await Promise.race([node.failed, sleep(5)]);
      }
    };

    let profileSummary: ReturnType<typeof summarizeProfile> | null = null;
    /** One send of member 0, timed and broken down; members' handling waits until it returned. */
    const measuredSend = async (label: string, profile: boolean) => {
      for (const m of members) m.round = freshRound();
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      expectedText = `${TEXT} [${label}]`;
      const content = create(PlainContentSchema, { text: expectedText });
      const session = profile ? new Session() : null;
      if (session) {
        session.connect();
        await session.post("Profiler.enable");
        await session.post("Profiler.setSamplingInterval", { interval: 100 });
        await session.post("Profiler.start");
      }
      tracer.calls.length = 0;
      tracer.on = true;
      const thread0 = process.threadCpuUsage();
      const start = { at: performance.now(), cpuUs: usNow() };
      const { envelope } = await sender.codec.encrypt(current, content);
      const encrypted = { at: performance.now(), cpuUs: usNow() };
      await senderMessages.sendMessage({ conversationId: current.id, clientMessageId: randomUUID(), content: { case: "envelope", value: envelope } });
      const end = { at: performance.now(), cpuUs: usNow() };
      const thread = process.threadCpuUsage(thread0);
      tracer.on = false;
      if (session) {
        const { profile: cpuProfile } = await session.post("Profiler.stop");
        session.disconnect();
        writeFileSync(flags["cpu-prof"]!, JSON.stringify(cpuProfile));
        profileSummary = summarizeProfile(flags["cpu-prof"]!, 15);
      }
      const calls = [...tracer.calls];
      const claim = calls.find((c) => c.method === "ClaimPrekeys");
      const phases = phasesOf(start, calls, end);
      const sum = (names: string[]) => round(phases.filter((p) => names.includes(p.phase)).reduce((a, p) => a + p.cpuMs, 0));
      open();
      return {
        start,
        end,
        result: {
          keyEpoch: current.keyEpoch,
          toDeviceRecipients: claim === undefined ? 0 : readers().length,
          clientCpuMs: round((end.cpuUs - start.cpuUs) / 1000),
          mainThreadCpuMs: round((thread.user + thread.system) / 1000),
          wallMs: round(end.at - start.at),
          encryptCpuMs: round((encrypted.cpuUs - start.cpuUs) / 1000),
          sendMessageCpuMs: round((end.cpuUs - encrypted.cpuUs) / 1000),
          breakdownCpuMs: {
            deviceListing: sum(["before ListMembers", "rpc ListMembers", "after ListMembers", "rpc ListDevices", "after ListDevices"]),
            prekeyClaiming: sum(["rpc ClaimPrekeys"]),
            sealingToDevicePayloads: sum(["after ClaimPrekeys"]),
            sendToDeviceRpc: sum(["rpc SendToDevice"]),
            messageSeal: sum(["after SendToDevice"]),
            sendMessageRpc: sum(["rpc SendMessage"]),
          },
          phases,
          targetCpuMs: SENDER_CPU_TARGET_MS,
          met: (end.cpuUs - start.cpuUs) / 1000 < SENDER_CPU_TARGET_MS,
        },
      };
    };

    const serverCpu = () => procCpu(node.pid)?.cpu ?? ZERO;
    const pgCpu = () => [...cpuByComm("postgres").values()].reduce((a, c) => ({ user: a.user + c.user, system: a.system + c.system }), ZERO);
    const cpuMs = (a: Cpu, b: Cpu) => round((b.user + b.system - a.user - a.system) * 1000);

    /** A send after which every active reader must decrypt; returns the timings. */
    const sendAndRead = async (label: string, mode: "concurrent" | "serial", profile: boolean) => {
      serial = mode === "serial" ? Promise.resolve() : null;
      const server0 = serverCpu();
      const pg0 = pgCpu();
      const sent = await measuredSend(label, profile);
      const readersNow = readers();
      await waitFor(`${label}: members decrypting`, () => readersNow.every((m) => m.round.decryptedAt > 0), waitMs(MEMBERS));
      const lastDecrypted = Math.max(...readersNow.map((m) => m.round.decryptedAt));
      const serverMs = cpuMs(server0, serverCpu());
      const pgMs = cpuMs(pg0, pgCpu());
      serial = null;
      const samples = (f: (m: Member) => number) => {
        const s = new Samples(readersNow.length);
        for (const m of readersNow) s.add(f(m));
        return s.summary();
      };
      return {
        sender: sent.result,
        readers: readersNow.length,
        handling: mode,
        allReadMs: { fromSendStart: round(lastDecrypted - sent.start.at), fromSendReturned: round(lastDecrypted - sent.end.at) },
        readMs: samples((m) => m.round.decryptedAt - sent.start.at),
        deliveryMs: {
          toDevice: samples((m) => m.round.toDeviceDeliveryMs),
          message: samples((m) => m.round.messageDeliveryMs),
        },
        // Only meaningful when members were handled one at a time.
        memberCpuMs: mode === "serial" ? samples((m) => m.round.cpuUs / 1000) : null,
        memberHandlingMs: mode === "serial" ? samples((m) => m.round.handlingMs) : null,
        serverCpuMs: serverMs,
        postgresCpuMs: pgMs,
      };
    };

    /** RemoveMember, then wait until every remaining member handled member_removed. */
    const remove = async (index: number) => {
      for (const m of members) m.round = freshRound();
      await senderConversations.removeMember({ conversationId: current.id, userId: userIds[index]! });
      members[index]!.active = false;
      const remaining = readers();
      await waitFor(`member_removed of ${userIds[index]}`, () => remaining.every((m) => m.round.memberRemovedHandled), waitMs(MEMBERS));
      await Promise.all(remaining.map((m) => m.chain));
      current = (await senderConversations.getConversation({ conversationId: current.id })).conversation!;
    };

    // Epoch 1: the first send distributes the sender key to every other member's device.
    const first = await sendAndRead("epoch 1", "concurrent", false);
    console.log(`   first send (epoch 1, sender key to ${first.readers} devices): sender CPU ${first.sender.clientCpuMs} ms, wall ${first.sender.wallMs} ms; all ${first.readers} read it ${first.allReadMs.fromSendStart} ms after the send started`);
    const setupSeconds = round((performance.now() - setupStarted) / 1000, 1);

    await remove(MEMBERS - 1);
    const round1 = await sendAndRead("after removal 1", "concurrent", flags["cpu-prof"] !== undefined);
    await remove(MEMBERS - 2);
    const round2 = await sendAndRead("after removal 2", "serial", false);
    const errors = members.flatMap((m) => m.errors.map((e) => `member ${m.index}: ${e}`));
    await closeStreams(streams);
    // Round 3: the sender alone. With the members' streams closed nothing else runs in this
    // process, so its CPU (WebCrypto's thread pool and GC helpers included) is the sender's own.
    const thirdRemoved = MEMBERS - 3;
    await senderConversations.removeMember({ conversationId: current.id, userId: userIds[thirdRemoved]! });
    members[thirdRemoved]!.active = false;
    current = (await senderConversations.getConversation({ conversationId: current.id })).conversation!;
    const round3 = (await measuredSend("after removal 3, sender alone", false)).result;
    return { members: MEMBERS, conversationId: conversation.id, registerSeconds, setupSeconds, firstSend: first, round1, round2, round3, memberErrors: errors.slice(0, 10), memberErrorCount: errors.length, profile: profileSummary as ReturnType<typeof summarizeProfile> | null };
  })();
  try {
    return { postgres, ...(await Promise.race([node.failed, run])) };
  } finally {
    await node.stop();
    await database.drop();
  }
}

/**
 * When the slowest member would read the message if every member were its own device: the
 * sender's wall time, the to-device key's delivery (P99) and the member's own handling (P99:
 * its CPU and its RPCs), all measured in round 2.
 */
function projectedReadMs(r: Awaited<ReturnType<typeof removalSection>>): number {
  return round(r.round2.sender.wallMs + r.round2.deliveryMs.toDevice.p99 + r.round2.memberHandlingMs!.p99);
}

function printRemoval(r: Awaited<ReturnType<typeof removalSection>>): void {
  const sender = (label: string, s: typeof r.round1.sender) => [
    `   ${label}: epoch ${s.keyEpoch}, key to ${s.toDeviceRecipients} devices — sender client CPU ${s.clientCpuMs} ms (encrypt ${s.encryptCpuMs}, SendMessage ${s.sendMessageCpuMs}; main thread alone ${s.mainThreadCpuMs}), wall ${s.wallMs} ms   target < ${s.targetCpuMs} ms CPU: ${s.met ? "MET" : "NOT MET"}`,
    ...s.phases.map((p) => `      ${String(p.cpuMs).padStart(9)} ms CPU ${String(p.wallMs).padStart(9)} ms wall   ${p.what}`),
  ];
  const lines = [
    ...sender("round 1 send after a removal", r.round1.sender),
    `   round 1 (members handled concurrently in this process): all ${r.round1.readers} remaining members decrypted ${r.round1.allReadMs.fromSendStart} ms after the send started (${r.round1.allReadMs.fromSendReturned} ms after it returned)   target ${READ_TARGET_MS} ms: ${r.round1.allReadMs.fromSendStart <= READ_TARGET_MS ? "MET" : "NOT MET"} (simulated devices share one thread)`,
    `      read, from send start:          ${formatLatency(r.round1.readMs)}`,
    `      server CPU ${r.round1.serverCpuMs} ms, PostgreSQL CPU ${r.round1.postgresCpuMs} ms for the send and all members' key installs and reads`,
    ...sender("round 2 send after a second removal", r.round2.sender),
    `   round 2 (members handled one at a time): ${r.round2.readers} members`,
    `      per-member device CPU ms (key install + decrypt): ${formatLatency(r.round2.memberCpuMs!)}`,
    `      per-member handling wall ms (CPU + its RPCs):     ${formatLatency(r.round2.memberHandlingMs!)}`,
    `      delivery ms, committed (event created_at) → to_device_message on the member's feed: ${formatLatency(r.round2.deliveryMs.toDevice)}`,
    `      delivery ms, committed (event created_at) → message_created on the member's feed:   ${formatLatency(r.round2.deliveryMs.message)}`,
    `      (round 1, members busy meanwhile: to-device ${formatLatency(r.round1.deliveryMs.toDevice)}; message ${formatLatency(r.round1.deliveryMs.message)})`,
    `      one real device, from the send's start: sender wall ${r.round2.sender.wallMs} + key delivery p99 ${r.round2.deliveryMs.toDevice.p99} + its own handling p99 ${r.round2.memberHandlingMs!.p99} = ${projectedReadMs(r)} ms   target ${READ_TARGET_MS} ms: ${projectedReadMs(r) <= READ_TARGET_MS ? "MET" : "NOT MET"}`,
    ...sender("round 3 send after a third removal, the sender alone (member streams closed)", r.round3),
    `   member errors: ${r.memberErrorCount}${r.memberErrorCount ? ` ${r.memberErrors.slice(0, 3).join("; ")}` : ""}`,
  ];
  if (r.profile) lines.push(`   CPU profile of round 1's send (${r.profile.seconds.toFixed(2)} s sampled), self time by package/file:`, ...r.profile.byFile.slice(0, 8).map((l) => `      ${l}`), "   by function:", ...r.profile.self.slice(0, 10).map((l) => `      ${l}`));
  console.log(lines.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Section 3: bench/send.ts plain vs encrypted

interface SendRun {
  label: string;
  args: string[];
  messagesPerSecond: number;
  serverCpuMsPerMessage: number;
  postgresCpuMsPerMessage: number;
  serverPlusPostgresCpuMsPerMessage: number;
  p99Ms: number;
  errors: number;
  ok: boolean;
}

async function runSendBench(label: string, extra: string[]): Promise<SendRun> {
  const jsonFile = path.join(os.tmpdir(), `parley-e2e-send-${randomBytes(4).toString("hex")}.json`);
  onCleanup(`remove ${jsonFile}`, () => rmSync(jsonFile, { force: true }));
  const args = ["--seconds", String(SECONDS), "--senders", String(SEND_SENDERS), "--conversations", String(SEND_CONVERSATIONS), "--database-url", ADMIN_URL, "--json", jsonFile, ...extra];
  console.log(`\n-- bench/send.ts ${args.filter((a) => a !== jsonFile && a !== "--json").join(" ")}`);
  const child = spawn(process.execPath, [path.join(ROOT, "bench/send.ts"), ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const unregister = onCleanup(`stop bench/send.ts (${label})`, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM"); // it drops its own database on SIGTERM
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  });
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => process.stdout.write(chunk.replace(/^(?=.)/gm, "   | ")));
  const code = await withTimeout(exited, (SECONDS + 2) * 1000 + 240_000, `bench/send.ts ${label}`).finally(unregister);
  let summary: Record<string, any>;
  try {
    summary = JSON.parse(readFileSync(jsonFile, "utf8"));
  } catch {
    throw new Error(`bench/send.ts ${label} exited with ${code} and wrote no summary`);
  }
  const server = Number(summary.cpuMsPerMessage.server);
  const pgMs = Number(summary.cpuMsPerMessage.postgres);
  return {
    label,
    args: extra,
    messagesPerSecond: summary.messagesPerSecond,
    serverCpuMsPerMessage: server,
    postgresCpuMsPerMessage: pgMs,
    serverPlusPostgresCpuMsPerMessage: round(server + pgMs, 3),
    p99Ms: summary.latencyMs.p99,
    errors: summary.sends.errors,
    ok: code === 0,
  };
}

async function sendSection() {
  const runs: SendRun[] = [];
  runs.push(await runSendBench("plain", []));
  runs.push(await runSendBench("encrypted", ["--encrypted"]));
  runs.push(await runSendBench("encrypted + 8 search tokens", ["--encrypted", "--search-tokens", "8"]));
  const plain = runs[0]!;
  const ratios = runs.slice(1).map((r) => ({
    label: r.label,
    cpuPerMessage: round(r.serverPlusPostgresCpuMsPerMessage / plain.serverPlusPostgresCpuMsPerMessage, 3),
    serverCpuPerMessage: round(r.serverCpuMsPerMessage / plain.serverCpuMsPerMessage, 3),
    messagesPerSecond: round(r.messagesPerSecond / plain.messagesPerSecond, 3),
  }));
  const encrypted = ratios[0]!;
  return { seconds: SECONDS, senders: SEND_SENDERS, conversations: SEND_CONVERSATIONS, runs, ratios, target: { withinPercent: 10, met: encrypted.cpuPerMessage <= 1.1 } };
}

function printSend(s: Awaited<ReturnType<typeof sendSection>>): void {
  console.log(
    [
      "",
      `== send: bench/send.ts, ${s.senders} senders, ${s.conversations} conversations, ${s.seconds} s each`,
      ...s.runs.map(
        (r) =>
          `   ${r.label.padEnd(28)} ${String(r.messagesPerSecond).padStart(8)} msg/s   server ${r.serverCpuMsPerMessage} + PostgreSQL ${r.postgresCpuMsPerMessage} = ${r.serverPlusPostgresCpuMsPerMessage} CPU ms/message   p99 ${r.p99Ms} ms   errors ${r.errors}${r.ok ? "" : "  (run FAILED its own checks)"}`,
      ),
      ...s.ratios.map((q) => `   ${q.label} / plain: server+PostgreSQL CPU per message ×${q.cpuPerMessage} (server alone ×${q.serverCpuPerMessage}), msg/s ×${q.messagesPerSecond}`),
      `   target: encrypted within 10 % of plain (server+PostgreSQL CPU per message): ${s.target.met ? "MET" : "NOT MET"}`,
    ].join("\n"),
  );
}

// ---------------------------------------------------------------------------------------

async function main() {
  const busyBefore = await busyCores(1000);
  console.log(`bench:e2e — ${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, node ${process.version}; ${busyBefore} cores busy before the run${busyBefore > 0.3 ? " (NOT a quiet machine: figures are noisy)" : ""}`);
  const summary: Record<string, unknown> = { bench: "e2e", machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", node: process.version, busyCoresBefore: busyBefore }, config: { members: MEMBERS, seconds: SECONDS, skip: [...SKIP] } };
  let ok = true;
  if (!SKIP.has("crypto")) {
    const c = await cryptoSection();
    printCrypto(c);
    summary.crypto = c;
  }
  if (!SKIP.has("removal")) {
    const r = await removalSection();
    printRemoval(r);
    summary.removal = r;
    ok &&= r.memberErrorCount === 0;
  }
  if (!SKIP.has("send")) {
    const s = await sendSection();
    printSend(s);
    summary.send = s;
    ok &&= s.runs.every((r) => r.ok);
  }
  const json = JSON.stringify(summary);
  if (flags.json !== undefined) writeFileSync(flags.json, json + "\n");
  console.log(json);
  return ok;
}

await runBench(main, 45 * 60_000);
