/** Builds SDK clients against a test server, each on its own connections so closing one is clean. */
import * as http from "node:http";
import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ParleyClient, type ClientEvent, type ClientStore, type DecodedMessage } from "../../src/client/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { EVENT_DEADLINE_MS } from "../helpers/feed.ts";
import type { RemoteServer } from "../helpers/test-server.ts";

export interface SdkClient {
  client: ParleyClient;
  store: ClientStore;
  /** Every session event since the client was built. */
  events: ClientEvent[];
  /** The "message" events' messages, in the order they were handed over. */
  messages(conversationId?: string): DecodedMessage[];
  /** Waits until `check` holds (re-checked after every event). */
  waitUntil(check: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface SdkClientOptions {
  store?: ClientStore;
  interceptors?: Interceptor[];
  /** Talk to this base URL instead of the server's (e.g. a port that is closed). */
  baseUrl?: string;
  start?: boolean;
}

/** A started ParleyClient for the user, over Connect (binary, HTTP/1.1), with fast retries. */
export function sdkClient(server: RemoteServer, userId: string, options: SdkClientOptions = {}): SdkClient {
  const agent = new http.Agent({ keepAlive: true });
  const transport = createConnectTransport({
    baseUrl: options.baseUrl ?? server.baseUrl,
    httpVersion: "1.1",
    nodeOptions: { agent },
    interceptors: options.interceptors ?? [],
    defaultTimeoutMs: 10_000,
  });
  const store = options.store ?? new MemoryStore();
  const client = new ParleyClient({ transport, token: () => server.tokenFor(userId), store, backoff: { initialMs: 50, maxMs: 500 } });
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  client.on((e) => {
    events.push(e);
    for (const w of [...waiters]) w();
  });
  if (options.start ?? true) client.start();
  return {
    client,
    store,
    events,
    messages: (conversationId) =>
      events.flatMap((e) => (e.type === "message" && (!conversationId || e.message.conversationId === conversationId) ? [e.message] : [])),
    async waitUntil(check, what, timeoutMs = EVENT_DEADLINE_MS) {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
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

function describe(e: ClientEvent): string {
  switch (e.type) {
    case "message":
      return `msg#${e.message.seq}`;
    case "connection":
      return e.live ? "live" : "offline";
    case "event":
      return `event(${e.event.kind.case})`;
    default:
      return e.type;
  }
}
