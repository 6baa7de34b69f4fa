/**
 * Rate limits from the outside: what a client sees when it writes too fast, signs in with bad
 * tokens too often, or calls as an operator; that refused calls change nothing; that reads are
 * never limited; and that nodes sharing Redis share one bucket per user.
 *
 * Client addresses are faked with X-Forwarded-For behind TRUST_PROXY_HOPS=1, so every test has
 * addresses (and users) of its own.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { createRegistry, fromBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { anyUnpack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { call, loadServices, type ServiceClient } from "../helpers/grpc-js.ts";
import { MAIN_PROTOCOLS, registerUsers, startTestServer, uniqueId, type Clients, type RemoteServer, type TestServer } from "../helpers/test-server.ts";

/** A fresh, unique client address (TEST-NET and private ranges only). */
function freshIp(): string {
  const [a, b, c] = randomBytes(3);
  return `10.${a}.${b}.${c! || 1}`;
}

/** Call options that make the call come from ip (through the one trusted proxy). */
const from = (ip: string) => ({ headers: { "x-forwarded-for": ip } });

/** The error a call failed with, or null when it succeeded. */
async function outcome(call: Promise<unknown>): Promise<ConnectError | null> {
  try {
    await call;
    return null;
  } catch (error) {
    return ConnectError.from(error);
  }
}

interface Refusal {
  reason: string | undefined;
  bucket: string | undefined;
  limits: string | undefined;
  retryMs: number | undefined;
}

function refusal(error: ConnectError): Refusal {
  const info = error.findDetails(ErrorInfoSchema)[0];
  const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    reason: info?.reason,
    bucket: info?.metadata.bucket,
    limits: info?.metadata.limits,
    retryMs: retry ? Number(retry.seconds) * 1000 + retry.nanos / 1e6 : undefined,
  };
}

/** Writes (UpdateProfile) until one is refused; returns how many were admitted and the refusal. */
async function writeUntilRefused(clients: Clients, ip: string, max = 50): Promise<{ admitted: number; error: ConnectError }> {
  for (let admitted = 0; admitted < max; admitted++) {
    const error = await outcome(clients.users.updateProfile({ displayName: `n${admitted}` }, from(ip)));
    if (error) return { admitted, error };
  }
  assert.fail(`${max} writes in a row were admitted`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A DIRECT conversation of `user` and a peer, created by the peer (so the user's bucket is untouched). */
async function directWith(server: RemoteServer, user: string): Promise<{ id: string; peer: Clients }> {
  const peerId = uniqueId("peer");
  await registerUsers(server, [user, peerId]);
  const peer = server.clientsFor(peerId, "grpc");
  const created = await peer.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [user] }, from(freshIp()));
  return { id: created.conversation!.id, peer };
}

describe("rate limits", () => {
  describe("per user", () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({
        TRUST_PROXY_HOPS: "1",
        RATE_LIMIT_USER_PER_SECOND: "2",
        RATE_LIMIT_USER_BURST: "5",
      });
    });
    after(async () => server?.stop());

    for (const protocol of MAIN_PROTOCOLS) {
      it(`refuses writes past the burst with RESOURCE_EXHAUSTED, RetryInfo and the user bucket named, and lets the call through after the delay (${protocol})`, async () => {
        const clients = server.clientsFor(uniqueId("writer"), protocol);
        const ip = freshIp();
        const started = performance.now();
        const { admitted, error } = await writeUntilRefused(clients, ip);
        const elapsed = (performance.now() - started) / 1000;
        assert.ok(admitted >= 5 && admitted <= 5 + Math.ceil(2 * elapsed), `admitted ${admitted} in ${elapsed.toFixed(2)} s`);
        assert.equal(error.code, Code.ResourceExhausted);
        const details = refusal(error);
        assert.deepEqual({ ...details, retryMs: undefined }, { reason: "RATE_LIMITED", bucket: "user", limits: "writes", retryMs: undefined });
        assert.ok(details.retryMs !== undefined && details.retryMs > 0 && details.retryMs <= 500, `retry delay ${details.retryMs} ms (one token every 500 ms)`);

        await sleep(details.retryMs);
        assert.equal(await outcome(clients.users.updateProfile({ displayName: "after the wait" }, from(ip))), null, "a call made after the retry delay is admitted");
        const again = await outcome(clients.users.updateProfile({ displayName: "too soon" }, from(ip)));
        assert.equal(again?.code, Code.ResourceExhausted, "and the token it took is gone again");
      });
    }

    it("writes nothing for a refused call", async () => {
      const userId = uniqueId("sender");
      const { id, peer } = await directWith(server, userId);
      const clients = server.clientsFor(userId, "grpc");
      const ip = freshIp();
      const admittedIds: string[] = [];
      const refusedIds: string[] = [];
      for (let i = 0; i < 12; i++) {
        const clientMessageId = randomUUID();
        const error = await outcome(clients.messages.sendMessage({ conversationId: id, clientMessageId, content: { case: "text", value: `m${i}` } }, from(ip)));
        if (error === null) admittedIds.push(clientMessageId);
        else {
          assert.equal(error.code, Code.ResourceExhausted);
          refusedIds.push(clientMessageId);
        }
      }
      assert.ok(refusedIds.length > 0, "some sends were refused");
      const listed = await peer.messages.listMessages({ conversationId: id, pageSize: 100 });
      assert.deepEqual(listed.messages.map((m) => m.clientMessageId).sort(), [...admittedIds].sort(), "exactly the admitted sends are stored");
    });

    it("never limits reads, even when the user's writes are refused", async () => {
      const clients = server.clientsFor(uniqueId("reader"), "grpc");
      const ip = freshIp();
      await writeUntilRefused(clients, ip);
      for (let i = 0; i < 30; i++) {
        await clients.users.getMe({}, from(ip));
        await clients.conversations.listConversations({}, from(ip));
      }
    });

    it("counts Subscribe as a write", async () => {
      const clients = server.clientsFor(uniqueId("subscriber"), "grpc");
      const ip = freshIp();
      await writeUntilRefused(clients, ip);
      const abort = new AbortController();
      const error = await outcome(
        (async () => {
          for await (const _ of clients.events.subscribe({}, { ...from(ip), signal: abort.signal, timeoutMs: 0 })) abort.abort();
        })(),
      );
      assert.equal(error?.code, Code.ResourceExhausted, `Subscribe failed with ${error?.message}`);
      assert.equal(refusal(error).bucket, "user");
    });

    for (const role of ["operator", "service"] as const) {
      it(`never limits a token with the ${role} role`, async () => {
        const clients = server.clientsFor(uniqueId(role), "grpc", { roles: [role] });
        const ip = freshIp();
        for (let i = 0; i < 30; i++) await clients.users.updateProfile({ displayName: `${role} ${i}` }, from(ip));
      });
    }

    it("gives an independent grpc-js client RetryInfo and ErrorInfo in grpc-status-details-bin", async () => {
      const services = loadServices<"UserService">(["parley/v1/user_service.proto"]);
      const users: ServiceClient = new services.UserService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
      try {
        const md = new grpc.Metadata();
        md.set("authorization", `Bearer ${await server.tokenFor(uniqueId("grpcjs"))}`);
        md.set("x-forwarded-for", freshIp());
        let error: grpc.ServiceError | null = null;
        for (let i = 0; i < 50 && error === null; i++) {
          await call(users, "UpdateProfile", { display_name: `g${i}` }, md).catch((e: grpc.ServiceError) => (error = e));
        }
        assert.ok(error, "a write was refused");
        const refused = error as grpc.ServiceError;
        assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED);
        const [bin] = refused.metadata.get("grpc-status-details-bin");
        assert.ok(Buffer.isBuffer(bin), "grpc-status-details-bin is present");
        const registry = createRegistry(ErrorInfoSchema, RetryInfoSchema);
        const details = statusDetails(bin).map((any) => anyUnpack(any, registry));
        const retry = details.find((d) => d?.$typeName === "google.rpc.RetryInfo") as { retryDelay?: { seconds: bigint; nanos: number } } | undefined;
        const info = details.find((d) => d?.$typeName === "google.rpc.ErrorInfo") as { reason: string; metadata: Record<string, string> } | undefined;
        assert.equal(info?.reason, "RATE_LIMITED");
        assert.equal(info?.metadata.bucket, "user");
        const ms = retry?.retryDelay ? Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6 : 0;
        assert.ok(ms > 0 && ms <= 500, `retry delay ${ms} ms`);
      } finally {
        users.close();
      }
    });
  });

  describe("per IP", () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({
        TRUST_PROXY_HOPS: "1",
        RATE_LIMIT_IP_PER_SECOND: "1",
        RATE_LIMIT_IP_BURST: "4",
        RATE_LIMIT_AUTH_FAILURES_PER_SECOND: "2",
        RATE_LIMIT_AUTH_FAILURES_BURST: "3",
      });
    });
    after(async () => server?.stop());

    it("limits the writes of all users behind one address together, and no other address", async () => {
      const ip = freshIp();
      const users = [0, 1, 2].map(() => server.clientsFor(uniqueId("natted"), "grpc"));
      let admitted = 0;
      let error: ConnectError | null = null;
      const started = performance.now();
      for (let i = 0; error === null && i < 30; i++) {
        error = await outcome(users[i % 3]!.users.updateProfile({ displayName: `n${i}` }, from(ip)));
        if (error === null) admitted++;
      }
      const elapsed = (performance.now() - started) / 1000;
      assert.ok(admitted >= 4 && admitted <= 4 + Math.ceil(elapsed), `admitted ${admitted} from one address in ${elapsed.toFixed(2)} s`);
      assert.equal(error?.code, Code.ResourceExhausted);
      assert.deepEqual({ ...refusal(error!), retryMs: undefined }, { reason: "RATE_LIMITED", bucket: "ip", limits: "writes", retryMs: undefined });
      // The same users from another address are not limited: their own buckets are far from empty.
      for (const clients of users) await clients.users.updateProfile({ displayName: "elsewhere" }, from(freshIp()));
    });

    it("throttles failed sign-ins per address, even a valid token while the address waits, until the retry delay", async () => {
      const ip = freshIp();
      const bad = server.clientsWithAuthorization("Bearer not-a-token", "grpc");
      const none = server.clientsWithAuthorization(undefined, "connect");
      const codes: Code[] = [];
      for (let i = 0; i < 3; i++) codes.push((await outcome((i % 2 ? none : bad).users.getMe({}, from(ip))))!.code);
      assert.deepEqual(codes, [Code.Unauthenticated, Code.Unauthenticated, Code.Unauthenticated], "the burst of failures is answered as usual");
      const throttled = (await outcome(bad.users.getMe({}, from(ip))))!;
      assert.equal(throttled.code, Code.ResourceExhausted);
      const details = refusal(throttled);
      assert.deepEqual({ ...details, retryMs: undefined }, { reason: "RATE_LIMITED", bucket: "ip", limits: "auth_failures", retryMs: undefined });
      assert.ok(details.retryMs! > 0 && details.retryMs! <= 500, `retry delay ${details.retryMs} ms (a failure every 500 ms)`);

      const valid = server.clientsFor(uniqueId("neighbour"), "grpc");
      assert.equal((await outcome(valid.users.getMe({}, from(ip))))?.code, Code.ResourceExhausted, "no token is even checked from the address while it waits");
      assert.equal((await outcome(bad.users.getMe({}, from(freshIp()))))?.code, Code.Unauthenticated, "another address is not affected");

      await sleep(details.retryMs!);
      assert.equal(await outcome(valid.users.getMe({}, from(ip))), null, "after the delay a valid token works again");
    });

    it("does not throttle health checks", async () => {
      const ip = freshIp();
      const bad = server.clientsWithAuthorization("Bearer not-a-token", "grpc");
      for (let i = 0; i < 5; i++) await outcome(bad.users.getMe({}, from(ip)));
      const { Health } = await import("../../gen/grpc/health/v1/health_pb.ts");
      const { createClient } = await import("@connectrpc/connect");
      const health = createClient(Health, server.transport("grpc"));
      await health.check({}, from(ip));
    });
  });

  it("limits nothing with RATE_LIMITS=off", async () => {
    const server = await startTestServer({ RATE_LIMITS: "off", RATE_LIMIT_USER_PER_SECOND: "1", RATE_LIMIT_USER_BURST: "1" });
    try {
      const clients = server.clientsFor(uniqueId("free"), "grpc");
      for (let i = 0; i < 20; i++) await clients.users.updateProfile({ displayName: `n${i}` });
    } finally {
      await server.stop();
    }
  });
});

/** The details (google.protobuf.Any) of a google.rpc.Status: field 3, repeated. */
function statusDetails(bytes: Uint8Array): Any[] {
  const reader = new BinaryReader(bytes);
  const details: Any[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 3) details.push(fromBinary(AnySchema, reader.bytes()));
    else reader.skip(wireType);
  }
  return details;
}
