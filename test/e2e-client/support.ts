/**
 * SDK clients with end-to-end encryption against a real server: a ParleyClient whose codec is
 * an E2EKeyManager, each device on its own HTTP connections (so closing one is clean), over
 * Connect binary on HTTP/1.1 as an app built on connect-node would talk.
 */
import assert from "node:assert/strict";
import type { Interceptor } from "@connectrpc/connect";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { PlainContent } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { ListDirection } from "../../gen/parley/v1/message_service_pb.ts";
import { ParleyClient, withBearerToken, type ClientStore } from "../../src/client/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { DecryptError, E2EKeyManager, type DecryptErrorReason } from "../../src/client/e2e/index.ts";
import { EVENT_DEADLINE_MS } from "../helpers/feed.ts";
import { newUsers, startTestServer, type RemoteServer, type TestServer } from "../helpers/test-server.ts";
import { testTransport, watchSession, type SessionWatch } from "../client/support.ts";

/** One device of a user: its session, its key manager and what it has seen. */
export interface E2eDevice extends SessionWatch {
  readonly userId: string;
  readonly client: ParleyClient;
  readonly codec: E2EKeyManager;
  readonly store: ClientStore;
  readonly deviceId: string;
  /** What the key manager reported as dropped or failed (to-device payloads, key requests). */
  readonly codecErrors: unknown[];
  close(): Promise<void>;
}

export interface E2eDeviceOptions {
  store?: ClientStore;
  deviceName?: string;
  /** Talk to this base URL instead of the server's. */
  baseUrl?: string;
  /** Start the feed and the outbox (default true). */
  start?: boolean;
  /** On every request of the session and the key manager. */
  interceptors?: Interceptor[];
}

/**
 * Opens (registers, or restores from the store) a device of the user and starts its session.
 * The device is registered before this returns, so senders see it in the directory.
 */
export async function openDevice(server: RemoteServer, userId: string, options: E2eDeviceOptions = {}): Promise<E2eDevice> {
  const { transport, agent } = testTransport(options.baseUrl ?? server.baseUrl, options.interceptors);
  const token = () => server.tokenFor(userId);
  const store = options.store ?? new MemoryStore();
  const codecErrors: unknown[] = [];
  const codec = await E2EKeyManager.open({
    store,
    transport: withBearerToken(transport, token),
    userId,
    deviceName: options.deviceName ?? `${userId} test device`,
    onError: (error) => codecErrors.push(error),
  });
  const client = new ParleyClient({ transport, token, store, codec, backoff: { initialMs: 50, maxMs: 500 } });
  const watch = watchSession(client);
  if (options.start ?? true) client.start();
  return {
    ...watch,
    userId,
    client,
    codec,
    store,
    deviceId: codec.deviceId,
    codecErrors,
    async close() {
      await client.close();
      agent.destroy();
    },
  };
}

/** Waits until every device's feed is live (so none misses an event sent next). */
export async function allLive(devices: readonly E2eDevice[]): Promise<void> {
  await Promise.all(devices.map((d) => d.waitUntil(() => d.client.live, `${d.userId}'s device live`)));
}

/** Sends through the outbox and waits until the server stored it; returns the stored message. */
export async function sendAndStore(device: E2eDevice, conversationId: string, text: string): Promise<Message> {
  const pending = await device.client.send(conversationId, { text });
  return pending.message;
}

/** Every stored message of the conversation as `reader` lists it, oldest first. */
export async function rawMessages(reader: E2eDevice, conversationId: string): Promise<Message[]> {
  const out: Message[] = [];
  let startSeq = 0n;
  for (;;) {
    const res = await reader.client.messagesClient.listMessages({ conversationId, direction: ListDirection.FORWARD, startSeq, pageSize: 200 });
    out.push(...res.messages);
    if (res.messages.length < 200) return out;
    startSeq = res.messages[res.messages.length - 1]!.seq;
  }
}

/** The conversation as the device's session sees it now (read again from the server). */
export function freshConversation(device: E2eDevice, conversationId: string): Promise<Conversation> {
  return device.client.conversation(conversationId, true);
}

/** Decrypts with the device's codec; the DecryptError reason, or the content. */
export async function tryDecrypt(device: E2eDevice, conversation: Conversation, message: Message): Promise<{ ok: true; content: PlainContent } | { ok: false; reason: DecryptErrorReason; error: DecryptError }> {
  try {
    return { ok: true, content: await device.codec.decrypt(conversation, message) };
  } catch (error) {
    assert.ok(error instanceof DecryptError, `decrypt failed with a DecryptError, not ${String(error)}`);
    return { ok: false, reason: error.reason, error };
  }
}

/** Asserts decrypting fails with a DecryptError of this reason (and never with anything else). */
export async function assertDecryptFails(device: E2eDevice, conversation: Conversation, message: Message, reasons: readonly DecryptErrorReason[], what: string): Promise<DecryptErrorReason> {
  const result = await tryDecrypt(device, conversation, message);
  assert.equal(result.ok, false, `${what}: decrypting must fail, but it opened to ${result.ok ? JSON.stringify(result.content.text) : ""}`);
  if (result.ok) throw new Error("unreachable");
  assert.ok(reasons.includes(result.reason), `${what}: reason ${result.reason}, expected one of ${reasons.join(", ")}`);
  return result.reason;
}

/** Waits until the device's codec opens the message, retrying while keys travel. */
export async function decryptEventually(device: E2eDevice, conversation: Conversation, message: Message, timeoutMs = EVENT_DEADLINE_MS): Promise<PlainContent> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const result = await tryDecrypt(device, conversation, message);
    if (result.ok) return result.content;
    last = result.error;
    if (Date.now() > deadline) throw new Error(`${device.userId}'s device could not open message #${message.seq} within ${timeoutMs} ms: ${String(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Three users with a live device each on a server of their own, for a describe block. */
export interface Trio {
  readonly server: TestServer;
  /** The users' ids: a, b, c. */
  readonly ids: readonly [string, string, string];
  /** Their devices: alice, bob, carol. */
  readonly devices: readonly [E2eDevice, E2eDevice, E2eDevice];
  /** Opens another device of a user (closed with the others). */
  addDevice(userId: string): Promise<E2eDevice>;
}

/** Registers the hooks: the server and the three devices before the tests, all closed after. */
export function useTrio(label: string): () => Trio {
  let trio: Trio | undefined;
  const extra: E2eDevice[] = [];
  before(async () => {
    const server = await startTestServer();
    const ids = (await newUsers(server, 3, label)) as [string, string, string];
    const devices = [await openDevice(server, ids[0]), await openDevice(server, ids[1]), await openDevice(server, ids[2])] as const;
    await allLive(devices);
    trio = {
      server,
      ids,
      devices,
      async addDevice(userId) {
        const device = await openDevice(server, userId);
        extra.push(device);
        await allLive([device]);
        return device;
      },
    };
  });
  after(async () => {
    await Promise.all([...(trio?.devices ?? []), ...extra].map((d) => d.close()));
    await trio?.server.stop();
  });
  return () => {
    if (!trio) throw new Error("the trio starts in the before hook");
    return trio;
  };
}
