/**
 * `npm run bench:inbox -- [--before /work/before] [--conversations 500] [--messages 1000000] [--calls 1000] [--rounds 5] ...`
 *
 * The inbox of a heavy user and the @everyone fan-out, against real PostgreSQL and NATS
 * JetStream, with Parley (src/main.ts) as a child process on a fresh database
 * `parley_bench_<random>` and a fresh NATS_PREFIX, both removed at the end even on failure.
 *
 *   1. Bulk load (SQL, generate_series): one user ("inbox-owner") in --conversations groups
 *      holding --messages messages in all (evenly spread, senders alternating between the
 *      owner and the two other members, every 40th message mentioning the owner, every 500th
 *      mentioning everyone). The owner has read each conversation up to a random point in its
 *      last 200 messages. Every member's unread counters are then computed from the rows (as
 *      the server keeps them at write time). Conversation 0 is the fan-out group: the owner
 *      plus --group-members other members.
 *   2. Reads over gRPC, --calls sequential calls of each kind after --warmup calls of each:
 *      ListConversations (first page of 50, with unread and mention counts and the last-message
 *      preview), ListMessages (the newest 50 messages of a conversation on that page) and
 *      GetMessage (its newest message): latency P50/P95/P99 and the server's CPU per call.
 *      The calls run in --read-rounds rounds; each round makes calls/rounds calls of each kind.
 *      With --before DIR, a second node runs src/main.ts from the checkout DIR (the previous
 *      release) on the same database, and the rounds alternate between the two nodes, so both
 *      see the same machine load; both tables and the ratio (now / before) are printed.
 *   3. Fan-out, --rounds times: the owner (group admin) sends a message mentioning everyone in
 *      conversation 0; the bench, subscribed to `<prefix>.push.>`, measures from the call until
 *      the push entry of the last member (one per member, the sender excluded) arrives.
 *
 * Flags:
 *   --conversations N   (default 500)       --messages N   (default 1000000)
 *   --group-members N   members of the fan-out group besides the owner (default 500)
 *   --calls N           measured calls of each read (default 1000)   --warmup N (default 100)
 *   --read-rounds N     rounds the reads are split into (default 10)
 *   --before DIR        also measure the node of this checkout (e.g. /work/before), alternating rounds
 *   --rounds N          fan-out rounds (default 5; on the current node only)
 *   --server-node-arg A extra node argument for the measured servers, e.g. --cpu-prof (repeatable)
 *   --database-url URL  the PostgreSQL server to create the bench database on
 *   --nats-url URL      (default nats://127.0.0.1:4222)
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { connect as connectNats } from "nats";
import { createClient } from "@connectrpc/connect";
import { ConversationService } from "../gen/parley/v1/conversation_service_pb.ts";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import { mintToken } from "../src/auth/index.ts";
import { onCleanup, runBench } from "./lib/cleanup.ts";
import { createBenchDatabase, postgresVersion } from "./lib/database.ts";
import { grpcConnection } from "./lib/grpc.ts";
import { natsPrefixForRun } from "./lib/nats.ts";
import { CpuMeter, formatCpu, procCpu } from "./lib/proc.ts";
import { benchNodeEnv, ParleyNode } from "./lib/server.ts";
import { formatLatency, Samples } from "./lib/stats.ts";
import { intFlag, printHelp, requireLocalUrl, round } from "./lib/util.ts";

const SECRET = randomBytes(32).toString("hex");
const ISSUER = "parley-bench";
const AUDIENCE = "parley";
const OWNER = "inbox-owner";
const PAGE = 50;
const FANOUT_TIMEOUT_MS = 30_000;

const { values: flags } = parseArgs({
  options: {
    conversations: { type: "string", default: "500" },
    messages: { type: "string", default: "1000000" },
    "group-members": { type: "string", default: "500" },
    calls: { type: "string", default: "1000" },
    warmup: { type: "string", default: "100" },
    rounds: { type: "string", default: "5" },
    "read-rounds": { type: "string", default: "10" },
    before: { type: "string" },
    "server-node-arg": { type: "string", multiple: true, default: [] },
    "database-url": { type: "string", default: process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" },
    "nats-url": { type: "string", default: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222" },
    help: { type: "boolean", default: false },
  },
});
if (flags.help) {
  printHelp(import.meta.url);
  process.exit(0);
}
const CONVERSATIONS = intFlag("conversations", flags.conversations, 1, 100_000);
const MESSAGES = intFlag("messages", flags.messages, CONVERSATIONS, 100_000_000);
const GROUP_MEMBERS = intFlag("group-members", flags["group-members"], 2, 10_000);
const CALLS = intFlag("calls", flags.calls, 1, 1_000_000);
const WARMUP = intFlag("warmup", flags.warmup, 0, 1_000_000);
const ROUNDS = intFlag("rounds", flags.rounds, 1, 1_000);
const READ_ROUNDS = intFlag("read-rounds", flags["read-rounds"], 1, CALLS);
const BEFORE = flags.before ? path.resolve(flags.before) : null;
requireLocalUrl("database-url", flags["database-url"]);
requireLocalUrl("nats-url", flags["nats-url"]);

const log = (line: string) => console.error(`bench: ${line}`);

/** Loads users, conversations, members and messages straight into the database. */
async function bulkLoad(url: string): Promise<string> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const perConversation = Math.floor(MESSAGES / CONVERSATIONS);
    const started = performance.now();
    await db.query("begin");
    await db.query(
      `insert into users (id) select $1 union all select 'peer-' || g from generate_series(1, greatest($2::int, 2 * $3::int)) g`,
      [OWNER, GROUP_MEMBERS, CONVERSATIONS],
    );
    // Conversation i has activity i minutes ago, so the first page is the 50 most recent.
    await db.query(
      `insert into conversations (id, type, name, created_by, created_at, last_activity_at, last_seq, member_count)
       select gen_random_uuid(), 2, 'group ' || g, $1, now() - interval '30 days', now() - g * interval '1 minute',
         $2, case when g = 0 then $3 + 1 else 3 end
       from generate_series(0, $4 - 1) g`,
      [OWNER, perConversation, GROUP_MEMBERS, CONVERSATIONS],
    );
    await db.query(`create temp table bench_conv as select id, row_number() over (order by last_activity_at desc) - 1 as n from conversations`);
    const fanoutGroup = (await db.query(`select id from bench_conv where n = 0`)).rows[0].id as string;
    // Members: the owner (admin) everywhere; two peers in each group; GROUP_MEMBERS peers in group 0.
    await db.query(
      `insert into conversation_members (conversation_id, user_id, role, last_read_seq)
       select id, $1, 2, 0 from bench_conv
       union all
       select id, 'peer-' || (2 * n + k), 1, 0 from bench_conv, generate_series(1, 2) k where n > 0
       union all
       select id, 'peer-' || g, 1, 0 from bench_conv, generate_series(1, $2::int) g where n = 0`,
      [OWNER, GROUP_MEMBERS],
    );
    log(`users, conversations and members in ${round((performance.now() - started) / 1000, 1)} s; loading ${perConversation * CONVERSATIONS} messages…`);
    await db.query(
      `insert into messages (conversation_id, seq, id, sender_id, client_message_id, created_at, body_text, mentioned_user_ids, mentions_everyone)
       select c.id, s, gen_random_uuid(),
         case s % 3 when 0 then $1 else 'peer-' || (case when c.n = 0 then 1 + s % 2 else 2 * c.n + 1 + s % 2 end) end,
         'bulk-' || s, now() - interval '30 days' + s * interval '1 second',
         'message ' || s || ' of a bulk-loaded conversation, about as long as a chat message usually is',
         case when s % 40 = 0 then array[$1] else '{}'::text[] end, s % 500 = 0
       from bench_conv c, generate_series(1, $2::int) s`,
      [OWNER, perConversation],
    );
    // The owner has read up to a random point of the last 200 messages of each conversation.
    await db.query(
      `update conversation_members set last_read_seq = greatest(0, $2::int - (random() * 200)::int) where user_id = $1`,
      [OWNER, perConversation],
    );
    // Every member's counters from the rows, as the server maintains them at write time.
    await db.query(
      `update conversation_members m set unread_count = u.unread, unread_mention_count = u.mentions
       from (
         select m2.conversation_id, m2.user_id, count(x.seq) as unread,
           count(x.seq) filter (where x.mentions_everyone or m2.user_id = any(x.mentioned_user_ids)) as mentions
         from conversation_members m2
         left join messages x on x.conversation_id = m2.conversation_id and x.seq > m2.last_read_seq and x.sender_id <> m2.user_id
         group by m2.conversation_id, m2.user_id
       ) u
       where m.conversation_id = u.conversation_id and m.user_id = u.user_id`,
    );
    await db.query("commit");
    await db.query("analyze");
    log(`bulk load done in ${round((performance.now() - started) / 1000, 1)} s`);
    return fanoutGroup;
  } finally {
    await db.end();
  }
}

/** One kind of read the bench measures, as a call against a node's clients. */
interface Read {
  name: string;
  call: (clients: Clients) => Promise<unknown>;
}

type Clients = { conversations: ReturnType<typeof createClient<typeof ConversationService>>; messages: ReturnType<typeof createClient<typeof MessageService>> };

/** A measured node: its clients, and per read its latencies and the CPU its process spent on them. */
interface Measured {
  label: string;
  node: ParleyNode;
  clients: Clients;
  samples: Map<string, Samples>;
  cpuSeconds: Map<string, number>;
}

function clientsOf(node: ParleyNode): Clients {
  const { transport } = grpcConnection(node.baseUrl);
  return { conversations: createClient(ConversationService, transport), messages: createClient(MessageService, transport) };
}

function processCpuSeconds(pid: number): number {
  const cpu = procCpu(pid)?.cpu;
  return cpu ? cpu.user + cpu.system : NaN;
}

/** `calls` sequential calls of a read on a node, added to its samples and CPU. */
async function measure(target: Measured, read: Read, calls: number): Promise<void> {
  const samples = target.samples.get(read.name)!;
  const cpu0 = processCpuSeconds(target.node.pid);
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    await read.call(target.clients);
    samples.add(performance.now() - t0);
  }
  target.cpuSeconds.set(read.name, target.cpuSeconds.get(read.name)! + processCpuSeconds(target.node.pid) - cpu0);
}

function summaryOf(target: Measured, read: Read) {
  const samples = target.samples.get(read.name)!;
  return { ...samples.summary(), serverCpuMsPerCall: round((target.cpuSeconds.get(read.name)! * 1000) / samples.count) };
}

/** One line per read and node, and the ratio now / before of P50, P95 and server CPU. */
function printTables(targets: readonly Measured[], reads: readonly Read[]): void {
  for (const target of targets) {
    console.log(`\n${target.label}${target.label === "before" ? ` (${BEFORE})` : ""}:`);
    for (const read of reads) {
      const s = summaryOf(target, read);
      console.log(`  ${read.name.padEnd(18)} ${formatLatency(s)}   server CPU ${s.serverCpuMsPerCall} ms/call`);
    }
  }
  if (targets.length < 2) return;
  const [before, now] = targets as [Measured, Measured];
  console.log("\nnow / before:");
  for (const read of reads) {
    const [b, n] = [summaryOf(before, read), summaryOf(now, read)];
    const ratio = (x: number, y: number) => `${round(x / y, 2)}×`.padEnd(7);
    console.log(`  ${read.name.padEnd(18)} P50 ${ratio(n.p50, b.p50)} P95 ${ratio(n.p95, b.p95)} P99 ${ratio(n.p99, b.p99)} server CPU ${ratio(n.serverCpuMsPerCall, b.serverCpuMsPerCall)} (${b.serverCpuMsPerCall} → ${n.serverCpuMsPerCall} ms)`);
  }
}

async function main(): Promise<void> {
  const database = await createBenchDatabase(flags["database-url"]);
  const natsPrefix = natsPrefixForRun(flags["nats-url"]);
  const env = {
    ...benchNodeEnv({ databaseUrl: database.url, natsUrl: flags["nats-url"], natsPrefix, secret: SECRET, issuer: ISSUER, audience: AUDIENCE, dataDir: os.tmpdir() }),
    MAX_GROUP_MEMBERS: String(GROUP_MEMBERS + 1),
  };
  // The first start applies the migrations; the bulk load then writes into the schema.
  let node = await ParleyNode.start({ label: "migrate", env });
  await node.stop();
  const fanoutGroup = await bulkLoad(database.url);
  // Both nodes serve the same database; an idle one costs the other nothing measurable.
  const targets: Measured[] = [];
  if (BEFORE) targets.push({ label: "before", node: await ParleyNode.start({ label: "before", env, root: BEFORE, nodeArgs: flags["server-node-arg"] }) } as Measured);
  node = await ParleyNode.start({ label: "now", env, nodeArgs: flags["server-node-arg"] });
  targets.push({ label: "now", node } as Measured);
  for (const target of targets) Object.assign(target, { clients: clientsOf(target.node), samples: new Map(), cpuSeconds: new Map() });

  const token = `Bearer ${await mintToken({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, userId: OWNER, expiresIn: "2h" })}`;
  const headers = { authorization: token };
  const { conversations, messages } = targets.at(-1)!.clients;

  const first = await conversations.listConversations({ pageSize: PAGE }, { headers });
  const unread = first.conversations.reduce((sum, c) => sum + c.unreadCount, 0n);
  const mentions = first.conversations.reduce((sum, c) => sum + c.unreadMentionCount, 0n);
  log(`first page: ${first.conversations.length} conversations, ${unread} unread, ${mentions} unread mentions`);
  // A conversation of the first page other than the fan-out group (whose history the fan-out grows).
  const opened = first.conversations.find((c) => c.id !== fanoutGroup)!;
  const reads: Read[] = [
    { name: "ListConversations", call: (c) => c.conversations.listConversations({ pageSize: PAGE }, { headers }) },
    { name: "ListMessages", call: (c) => c.messages.listMessages({ conversationId: opened.id, pageSize: PAGE }, { headers }) },
    { name: "GetMessage", call: (c) => c.messages.getMessage({ conversationId: opened.id, seq: opened.lastSeq }, { headers }) },
  ];
  for (const target of targets) {
    for (const read of reads) {
      target.samples.set(read.name, new Samples());
      target.cpuSeconds.set(read.name, 0);
      for (let i = 0; i < WARMUP; i++) await read.call(target.clients);
    }
  }
  const cpu = new CpuMeter(Object.fromEntries(targets.map((t) => [t.label, t.node.pid])));
  cpu.start();
  for (let round = 0; round < READ_ROUNDS; round++) {
    const calls = Math.floor(CALLS / READ_ROUNDS) + (round < CALLS % READ_ROUNDS ? 1 : 0);
    // Alternating which node goes first keeps a slow start or end of a round from favouring one.
    const order = round % 2 === 0 ? targets : [...targets].reverse();
    for (const target of order) for (const read of reads) await measure(target, read, calls);
  }
  const cpuReport = cpu.stop();
  console.log(`Reads (${CONVERSATIONS} conversations, ${MESSAGES} messages; page of ${PAGE}; ${CALLS} calls of each in ${READ_ROUNDS} rounds${BEFORE ? ", alternating between the nodes" : ""}):`);
  printTables(targets, reads);
  console.log(`  machine during the reads: ${formatCpu(cpuReport)}`);

  // Fan-out: @everyone → one push entry per other member.
  const nc = await connectNats({ servers: flags["nats-url"] });
  onCleanup("close NATS", () => nc.close());
  const fanout: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const seen = new Set<string>();
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    const subscription = nc.subscribe(`${natsPrefix}.push.>`, {
      callback: (_err, msg) => {
        const id = msg.headers?.get("Nats-Msg-Id");
        if (id) seen.add(id);
        if (seen.size >= GROUP_MEMBERS) done();
      },
    });
    await nc.flush();
    const t0 = performance.now();
    await messages.sendMessage({ conversationId: fanoutGroup, clientMessageId: `everyone-${r}`, content: { case: "text", value: `@everyone round ${r}` }, mentionEveryone: true }, { headers });
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`only ${seen.size} of ${GROUP_MEMBERS} push entries after ${FANOUT_TIMEOUT_MS} ms`)), FANOUT_TIMEOUT_MS).unref());
    await Promise.race([all, timeout]);
    fanout.push(performance.now() - t0);
    subscription.unsubscribe();
    console.log(`fan-out round ${r + 1}: @everyone → ${GROUP_MEMBERS} push entries in ${round(fanout.at(-1)!, 1)} ms`);
  }
  const sorted = [...fanout].sort((a, b) => a - b);
  const summary = {
    postgres: await postgresVersion(database.url),
    cores: os.cpus().length,
    reads: Object.fromEntries(targets.map((t) => [t.label, Object.fromEntries(reads.map((r) => [r.name, summaryOf(t, r)]))])),
    otherLoadCores: cpuReport.other,
    fanoutMs: { median: round(sorted[Math.floor(sorted.length / 2)]!, 1), max: round(sorted.at(-1)!, 1), rounds: fanout.map((v) => round(v, 1)) },
  };
  console.log(JSON.stringify(summary));
}

await runBench(main, 30 * 60_000);
