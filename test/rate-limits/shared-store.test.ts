/**
 * Buckets shared through Redis: two nodes admit no more than one bucket holds, and a node whose
 * Redis goes away keeps serving under RATE_LIMIT_STORE_DOWN (local, open or closed), says so in
 * its log, and shares again when Redis is back.
 *
 * Redis is the machine's (REDIS_URL for the tests: TEST_REDIS_URL, default
 * redis://127.0.0.1:6379; .ci/run starts it). Every server gets a key prefix of its own
 * (RATE_LIMIT_KEY_PREFIX), so parallel runs never share buckets; the keys expire by themselves
 * within seconds (a key lives until its bucket is full again).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import net from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { multiNodeAvailable, startCluster } from "../helpers/realtime.ts";
import { registerUsers, startTestServer, uniqueId, type RemoteServer, type TestServer } from "../helpers/test-server.ts";

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const redis = new URL(REDIS_URL);

/** A key prefix no other run uses. */
const keyPrefix = () => `ptest:${randomBytes(5).toString("hex")}`;

async function outcome(call: Promise<unknown>): Promise<ConnectError | null> {
  try {
    await call;
    return null;
  } catch (error) {
    return ConnectError.from(error);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A logger whose warn-and-above lines the test can read. */
function capturedLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: "warn" }, stream), lines, text: () => lines.join("") };
}

/** Waits until check() holds, for at most ms, doing `meanwhile` between looks. */
async function eventually(check: () => boolean, ms: number, what: string, meanwhile: () => Promise<unknown> = () => sleep(50)): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await meanwhile();
    await sleep(50);
  }
}

/** A TCP proxy in front of Redis that the test can cut (every connection dropped, new ones refused) and restore. */
async function redisProxy(): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(redis.port || 6379), redis.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on("error", () => {});
          s.once("close", () => {
            sockets.delete(s);
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      });
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });
  const cut = async () => {
    const closing = server ? new Promise<void>((resolve) => server!.close(() => resolve())) : Promise.resolve();
    for (const s of sockets) s.destroy();
    await closing;
    server = null;
  };
  await listen();
  return { url: `redis://127.0.0.1:${port}`, cut, restore: listen, close: cut };
}

describe("rate limits shared in Redis", () => {
  it("admit no more across two nodes than one bucket holds, and most of a flood is refused", async function () {
    this.timeout(60_000);
    const BURST = 10;
    const RATE = 5;
    const env = {
      REDIS_URL,
      RATE_LIMIT_KEY_PREFIX: keyPrefix(),
      RATE_LIMIT_USER_PER_SECOND: String(RATE),
      RATE_LIMIT_USER_BURST: String(BURST),
    };
    // With PostgreSQL the two nodes share a database (and NATS) as a real deployment does;
    // embedded, each has its own database and only the buckets are shared.
    let nodes: TestServer[];
    let stopAll: () => Promise<void>;
    if (multiNodeAvailable()) {
      const cluster = await startCluster(2, env);
      nodes = cluster.nodes;
      stopAll = () => cluster.stop();
    } else {
      nodes = await Promise.all([startTestServer(env), startTestServer(env)]);
      stopAll = async () => void (await Promise.all(nodes.map((n) => n.stop())));
    }
    try {
      const userId = uniqueId("flooder");
      const conversations: { node: RemoteServer; id: string }[] = [];
      for (const node of nodes) {
        const peerId = uniqueId("peer");
        await registerUsers(node, [userId, peerId]);
        const created = await node.clientsFor(peerId, "grpc").conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [userId] });
        conversations.push({ node, id: created.conversation!.id });
      }
      let admitted = 0;
      let refused = 0;
      const started = performance.now();
      const deadline = started + 2_000;
      let lastEnded = started;
      await Promise.all(
        conversations.flatMap(({ node, id }) =>
          Array.from({ length: 6 }, async () => {
            const messages = node.clientsFor(userId, "grpc").messages;
            while (performance.now() < deadline) {
              const error = await outcome(messages.sendMessage({ conversationId: id, clientMessageId: randomUUID(), content: { case: "text", value: "flood" } }));
              lastEnded = Math.max(lastEnded, performance.now());
              if (error === null) admitted++;
              else if (error.code === Code.ResourceExhausted) refused++;
              else throw error;
            }
          }),
        ),
      );
      const elapsed = (lastEnded - started) / 1000;
      const bound = BURST + RATE * elapsed;
      assert.ok(admitted <= bound, `admitted ${admitted} across both nodes in ${elapsed.toFixed(2)} s; the bucket allows ${bound.toFixed(1)}`);
      assert.ok(admitted >= BURST, `admitted ${admitted}: at least the burst`);
      assert.ok(refused > admitted, `refused ${refused}, admitted ${admitted}`);

      // What was admitted is exactly what is stored; nothing refused was written.
      let stored = 0;
      const counted = new Set<string>();
      for (const { node, id } of conversations) {
        if (counted.has(id)) continue;
        counted.add(id);
        const peerView = await node.clientsFor(userId, "grpc").messages.listMessages({ conversationId: id, pageSize: 200 });
        stored += peerView.messages.length;
      }
      assert.equal(stored, admitted);
    } finally {
      await stopAll();
    }
  });

  describe("when Redis is unreachable", () => {
    const down = (policy: string, extra: Record<string, string> = {}) => ({
      // Port 1: nothing listens there, so every connection is refused at once.
      REDIS_URL: "redis://127.0.0.1:1",
      RATE_LIMIT_STORE_DOWN: policy,
      RATE_LIMIT_KEY_PREFIX: keyPrefix(),
      RATE_LIMIT_USER_PER_SECOND: "1",
      RATE_LIMIT_USER_BURST: "3",
      ...extra,
    });

    it("starts anyway, logs it, and limits with the node's own buckets (local, the default)", async () => {
      const log = capturedLogger();
      const server = await startTestServer(down("local", { LOG_LEVEL: "warn" }), { appOptions: { logger: log.logger } });
      try {
        const clients = server.clientsFor(uniqueId("local"), "grpc");
        let admitted = 0;
        let error: ConnectError | null = null;
        while (error === null && admitted < 20) {
          error = await outcome(clients.users.updateProfile({ displayName: "x" }));
          if (error === null) admitted++;
        }
        assert.equal(error?.code, Code.ResourceExhausted);
        assert.ok(admitted >= 3 && admitted <= 4, `admitted ${admitted} with a local bucket of 3`);
        assert.match(log.text(), /rate limit store is unreachable: each node limits with its own buckets/);
      } finally {
        await server.stop();
      }
    });

    it("admits every call with RATE_LIMIT_STORE_DOWN=open", async () => {
      const server = await startTestServer(down("open"));
      try {
        const clients = server.clientsFor(uniqueId("open"), "grpc");
        for (let i = 0; i < 10; i++) await clients.users.updateProfile({ displayName: `n${i}` });
      } finally {
        await server.stop();
      }
    });

    it("refuses limited calls with UNAVAILABLE and still serves reads with RATE_LIMIT_STORE_DOWN=closed", async () => {
      const server = await startTestServer(down("closed"));
      try {
        const clients = server.clientsFor(uniqueId("closed"), "grpc");
        const error = await outcome(clients.users.updateProfile({ displayName: "x" }));
        assert.equal(error?.code, Code.Unavailable);
        await clients.users.getMe({});
        const operator = server.clientsFor(uniqueId("operator"), "grpc", { roles: ["operator"] });
        await operator.users.updateProfile({ displayName: "exempt callers need no store" });
      } finally {
        await server.stop();
      }
    });

    it("goes back to the shared buckets when Redis returns, and logs both changes", async function () {
      this.timeout(30_000);
      const proxy = await redisProxy();
      const log = capturedLogger();
      const server = await startTestServer(
        { REDIS_URL: proxy.url, RATE_LIMIT_KEY_PREFIX: keyPrefix(), RATE_LIMIT_USER_PER_SECOND: "1000", RATE_LIMIT_USER_BURST: "1000", LOG_LEVEL: "warn" },
        { appOptions: { logger: log.logger } },
      );
      try {
        const clients = server.clientsFor(uniqueId("flaky"), "grpc");
        await clients.users.updateProfile({ displayName: "shared" });
        await proxy.cut();
        // Writes keep working (policy local) while the store is away.
        for (let i = 0; i < 5; i++) await clients.users.updateProfile({ displayName: `local ${i}` });
        await eventually(() => /rate limit store is unreachable/.test(log.text()), 5_000, "the outage log line");
        await proxy.restore();
        await eventually(() => /rate limit store is reachable again/.test(log.text()), 15_000, "the recovery log line", async () => {
          await clients.users.updateProfile({ displayName: "probe" });
        });
      } finally {
        await server.stop();
        await proxy.close();
      }
    });
  });
});
