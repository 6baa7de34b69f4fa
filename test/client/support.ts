/** Builds SDK clients against a test server, each on its own connections so closing one is clean. */
import * as http from "node:http";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ParleyClient, type ClientEvent, type ClientStore, type DecodedMessage } from "../../src/client/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { EVENT_DEADLINE_MS } from "../helpers/feed.ts";
import type { RemoteServer } from "../helpers/test-server.ts";

/** What a test watches of a session: every event, the messages handed over, a wait. */
export interface SessionWatch {
  /** Every session event since the client was built. */
  events: ClientEvent[];
  /** The "message" events' messages, in the order they were handed over. */
  messages(conversationId?: string): DecodedMessage[];
  /** Waits until `check` holds (re-checked after every event and every 200 ms). */
  waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs?: number): Promise<void>;
}

export interface SdkClient extends SessionWatch {
  client: ParleyClient;
  store: ClientStore;
  close(): Promise<void>;
}

export interface SdkClientOptions {
  store?: ClientStore;
  interceptors?: Interceptor[];
  /** Talk to this base URL instead of the server's (e.g. a port that is closed). */
  baseUrl?: string;
  start?: boolean;
}

/** A transport on connections of its own (so closing them is clean): Connect binary over HTTP/1.1. */
export function testTransport(baseUrl: string, interceptors: Interceptor[] = []): { transport: Transport; agent: http.Agent } {
  const agent = new http.Agent({ keepAlive: true });
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent }, interceptors, defaultTimeoutMs: 10_000 });
  return { transport, agent };
}

/** Starts recording the session's events. */
export function watchSession(client: ParleyClient): SessionWatch {
  const events: ClientEvent[] = [];
  const waiters = new Set<() => void>();
  client.on((e) => {
    events.push(e);
    for (const w of [...waiters]) w();
  });
  return {
    events,
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
  };
}

/** A started ParleyClient for the user, over Connect (binary, HTTP/1.1), with fast retries. */
export function sdkClient(server: RemoteServer, userId: string, options: SdkClientOptions = {}): SdkClient {
  const { transport, agent } = testTransport(options.baseUrl ?? server.baseUrl, options.interceptors);
  const store = options.store ?? new MemoryStore();
  const client = new ParleyClient({ transport, token: () => server.tokenFor(userId), store, backoff: { initialMs: 50, maxMs: 500 } });
  const watch = watchSession(client);
  if (options.start ?? true) client.start();
  return {
    ...watch,
    client,
    store,
    async close() {
      await client.close();
      agent.destroy();
    },
  };
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
