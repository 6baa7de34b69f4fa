/**
 * SDK clients with end-to-end encryption against a real server: a ParleyClient whose codec is
 * an E2EKeyManager, each device on its own HTTP connections (so closing one is clean), over
 * Connect binary on HTTP/1.1 as an app built on connect-node would talk.
 */
import assert from "node:assert/strict";
import * as http from "node:http";
import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { PlainContent } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { ListDirection } from "../../gen/parley/v1/message_service_pb.ts";
import { ParleyClient, withBearerToken, type ClientEvent, type ClientStore, type DecodedMessage } from "../../src/client/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { DecryptError, E2EKeyManager, type DecryptErrorReason } from "../../src/client/e2e/index.ts";
import { EVENT_DEADLINE_MS } from "../helpers/feed.ts";
import type { RemoteServer } from "../helpers/test-server.ts";

/** One device of a user: its session, its key manager and what it has seen. */
export interface E2eDevice {
  readonly userId: string;
  readonly client: ParleyClient;
  readonly codec: E2EKeyManager;
  readonly store: ClientStore;
  readonly deviceId: string;
  /** Every session event since the client was built. */
  readonly events: ClientEvent[];
  /** What the key manager reported as dropped or failed (to-device payloads, key requests). */
  readonly codecErrors: unknown[];
  /** The "message" events' messages, in the order they were handed over. */
  messages(conversationId?: string): DecodedMessage[];
  /** Waits until `check` holds (re-checked after every session event and every 200 ms). */
  waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs?: number): Promise<void>;
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
  const agent = new http.Agent({ keepAlive: true });
  const transport = createConnectTransport({
    baseUrl: options.baseUrl ?? server.baseUrl,
    httpVersion: "1.1",
    nodeOptions: { agent },
    interceptors: options.interceptors ?? [],
    defaultTimeoutMs: 10_000,
  });
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
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  client.on((e) => {
    events.push(e);
    for (const w of [...waiters]) w();
  });
  if (options.start ?? true) client.start();
  return {
    userId,
    client,
    codec,
    store,
    deviceId: codec.deviceId,
    events,
    codecErrors,
    messages: (conversationId) =>
      events.flatMap((e) => (e.type === "message" && (!conversationId || e.message.conversationId === conversationId) ? [e.message] : [])),
    async waitUntil(check, what, timeoutMs = EVENT_DEADLINE_MS) {
      const deadline = Date.now() + timeoutMs;
      while (!(await check())) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`not ${what} within ${timeoutMs} ms; events: ${events.map(describe).join(", ")}`);
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, Math.min(left, 200));
          waiters.add(done);
        });
      }
    },
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

function describe(e: ClientEvent): string {
  switch (e.type) {
    case "message":
      return `msg#${e.message.seq}${e.message.error ? `(${String(e.message.error)})` : ""}`;
    case "connection":
      return e.live ? "live" : "offline";
    case "event":
      return `event(${e.event.kind.case})`;
    default:
      return e.type;
  }
}
