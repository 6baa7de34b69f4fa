/**
 * Starts the real Parley server in-process on a random port with a fresh database, and hands
 * out generated clients that call it over the wire as a given user.
 *
 * With DATABASE_URL set (a real PostgreSQL), every started server gets its own freshly created
 * database, dropped again on stop(), so test files never see each other's rows. Without it the
 * server runs on an in-memory embedded PGlite. Several nodes can share one database through
 * `startTestServer(env, { databaseUrl })` (see createTestDatabase); such a node leaves the
 * database to whoever created it.
 */
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import pg from "pg";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { loadConfig } from "../../src/config.ts";
import { createApp, type AppOptions } from "../../src/app.ts";
import { mintToken, type Role } from "../../src/auth/index.ts";
import { UNREACHABLE_RATE_LIMITS_ENV } from "../../src/ratelimit/index.ts";
import { UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { ConversationService } from "../../gen/parley/v1/conversation_service_pb.ts";
import { MessageService } from "../../gen/parley/v1/message_service_pb.ts";
import { EventService } from "../../gen/parley/v1/event_service_pb.ts";
import { SearchService } from "../../gen/parley/v1/search_service_pb.ts";
import { NotificationService } from "../../gen/parley/v1/notification_service_pb.ts";
import type { PushEntry } from "../../gen/parley/v1/notification_pb.ts";
import { SocialService } from "../../gen/parley/v1/social_service_pb.ts";
import { MediaService } from "../../gen/parley/v1/media_service_pb.ts";
import { StoryService } from "../../gen/parley/v1/story_service_pb.ts";
import { KeyService } from "../../gen/parley/v1/key_service_pb.ts";
import { ReportService } from "../../gen/parley/v1/report_service_pb.ts";
import { AdminService } from "../../gen/parley/v1/admin_service_pb.ts";
import { ConnectionService } from "../../gen/parley/v1/connection_service_pb.ts";
import { JobService } from "../../gen/parley/v1/job_service_pb.ts";
import { AnalyticsService } from "../../gen/parley/v1/analytics_service_pb.ts";

/**
 * How a client talks to the server. The main flows run over "grpc" and "connect"; the others
 * exist so one test can show that the single port serves every protocol.
 */
export type Protocol =
  | "grpc" // gRPC over HTTP/2 cleartext, as mobile stubs do
  | "connect" // Connect, binary, over HTTP/1.1
  | "connect-json" // Connect with JSON bodies over HTTP/1.1, as curl and buf curl do
  | "connect-get" // Connect over HTTP/1.1, side-effect-free RPCs as GET requests
  | "connect-h2" // Connect over HTTP/2
  | "grpc-web"; // gRPC-Web over HTTP/1.1, as browsers do

/** The two protocols every main flow is run over. */
export const MAIN_PROTOCOLS = ["grpc", "connect"] as const satisfies readonly Protocol[];

/** Generated clients for every Parley service. */
export interface Clients {
  users: Client<typeof UserService>;
  conversations: Client<typeof ConversationService>;
  messages: Client<typeof MessageService>;
  events: Client<typeof EventService>;
  search: Client<typeof SearchService>;
  notifications: Client<typeof NotificationService>;
  social: Client<typeof SocialService>;
  media: Client<typeof MediaService>;
  stories: Client<typeof StoryService>;
  keys: Client<typeof KeyService>;
  reports: Client<typeof ReportService>;
  admin: Client<typeof AdminService>;
  connections: Client<typeof ConnectionService>;
  jobs: Client<typeof JobService>;
  analytics: Client<typeof AnalyticsService>;
}

/** Clients on connections of their own, for a test that must control exactly when they close. */
export interface IsolatedClients extends Clients {
  /** Closes the connections (aborting whatever still runs on them). */
  close(): void;
}

export interface TokenOptions {
  roles?: readonly Role[];
  expiresIn?: string;
}

/** Calls a running Parley (in this process or another) over the wire. */
export interface RemoteServer {
  readonly port: number;
  readonly baseUrl: string;
  /** The HS256 secret the server verifies tokens with. */
  readonly secret: string;
  readonly issuer: string;
  readonly audience: string;
  /** A valid bearer token for the user. */
  tokenFor(userId: string, options?: TokenOptions): Promise<string>;
  /** Clients that call as the user (a bearer token for them on every request). */
  clientsFor(userId: string, protocol?: Protocol, options?: TokenOptions): Clients;
  /**
   * Clients that send exactly this Authorization header value, or none when it is undefined.
   * For authentication tests.
   */
  clientsWithAuthorization(authorization: string | undefined, protocol?: Protocol): Clients;
  /**
   * Clients that call as the user over connections nobody else uses and that stop() does not
   * close first: a stream on them stays open until the server ends it or close() is called.
   */
  isolatedClientsFor(userId: string, protocol?: Protocol, options?: TokenOptions): IsolatedClients;
  /** A transport with the given interceptors, for tests that need something unusual. */
  transport(protocol: Protocol, interceptors?: Interceptor[]): Transport;
  /** Closes the shared client connections (not those of isolated clients). */
  closeConnections(): void;
}

export interface TestServer extends RemoteServer {
  /** The environment the server was configured from. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The port metrics are served on (start with METRICS_PORT=0 for a free one), or null when off. */
  readonly metricsPort: number | null;
  /** The push outbox entries of a user, oldest first (JetStream or in-process, as the server runs). */
  pushEntries(userId: string): Promise<PushEntry[]>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Run on this existing database instead of a fresh one (several nodes of one cluster share
   * it); stop() leaves it in place.
   */
  databaseUrl?: string;
  /** Passed to createApp as its options (e.g. the test-only fault hooks). */
  appOptions?: AppOptions;
}

/**
 * Rate limits stay on in every test server (the checks run on every call) but are far above what
 * any suite sends: storms send thousands of writes from one user and one address (127.0.0.1).
 * test/rate-limits overrides them.
 */
export const TEST_RATE_LIMITS = UNREACHABLE_RATE_LIMITS_ENV;

/** The longest any single RPC may take in these tests. */
export const CALL_DEADLINE_MS = 10_000;
/** The longest a server may take to stop once its clients have disconnected. */
const STOP_DEADLINE_MS = 10_000;

/** A short id that no other test uses, e.g. "alice-3f9a0c1d". */
export function uniqueId(prefix = "user"): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** Starts the server; `overrides` are environment variables laid over the test defaults. */
export async function startTestServer(
  overrides: Record<string, string | undefined> = {},
  options: StartOptions = {},
): Promise<TestServer> {
  const database =
    options.databaseUrl === undefined && process.env.DATABASE_URL
      ? await createFreshDatabase(process.env.DATABASE_URL)
      : null;
  const secret = randomBytes(32).toString("hex");
  const env: Record<string, string | undefined> = {
    PORT: "0",
    HOST: "127.0.0.1",
    METRICS_PORT: "off",
    LOG_LEVEL: "silent",
    JWT_SECRET: secret,
    PGLITE_PATH: "memory://",
    DATABASE_URL: options.databaseUrl ?? database?.url,
    ...TEST_RATE_LIMITS,
    ...overrides,
  };
  const effectiveSecret = env.JWT_SECRET ?? secret;
  const issuer = env.JWT_ISSUER ?? "parley";
  const audience = env.JWT_AUDIENCE ?? "parley";

  let app: Awaited<ReturnType<typeof createApp>>;
  try {
    app = await createApp(loadConfig(env), options.appOptions);
  } catch (err) {
    await database?.drop();
    throw err;
  }
  try {
    await app.start();
  } catch (err) {
    // Release what the half-started app holds (its pool among others) before its database is
    // dropped, so the failure is reported as itself and not as a stray connection error.
    await withDeadline(app.stop(), STOP_DEADLINE_MS, "app.stop() after a failed start").catch(() => undefined);
    await database?.drop();
    throw err;
  }
  const remote = connectTo(`http://127.0.0.1:${app.port}`, { secret: effectiveSecret, issuer, audience });

  let stopped = false;
  return {
    ...remote,
    env,
    metricsPort: app.metricsPort,
    pushEntries: (userId) => app.pushOutbox.read(userId),
    async stop() {
      if (stopped) return;
      stopped = true;
      remote.closeConnections();
      try {
        await withDeadline(app.stop(), STOP_DEADLINE_MS, "app.stop()");
      } finally {
        await database?.drop();
      }
    },
  };
}

export interface ConnectOptions {
  /** The HS256 secret the server verifies tokens with. */
  secret: string;
  issuer?: string;
  audience?: string;
}

/** Clients for a Parley already listening at baseUrl (for example a child process). */
export function connectTo(baseUrl: string, options: ConnectOptions): RemoteServer {
  const secret = options.secret;
  const issuer = options.issuer ?? "parley";
  const audience = options.audience ?? "parley";
  const port = Number(new URL(baseUrl).port);

  interface Connections {
    sessionManager: Http2SessionManager;
    agent: http.Agent;
  }
  function openConnections(): Connections {
    return { sessionManager: new Http2SessionManager(baseUrl), agent: new http.Agent({ keepAlive: true }) };
  }
  function closeConnectionsOf(c: Connections): void {
    c.sessionManager.abort();
    c.agent.destroy();
  }

  // One HTTP/2 connection and one HTTP/1.1 agent per server, closed before the server stops,
  // so idle client connections never hold up its graceful shutdown.
  const shared = openConnections();

  function transportOn(c: Connections, protocol: Protocol, interceptors: Interceptor[] = []): Transport {
    const { sessionManager, agent } = c;
    // A deadline on every call, so a server that hangs fails the call with DEADLINE_EXCEEDED
    // (naming the RPC) well before mocha's test timeout. Streams pass timeoutMs: 0.
    const defaultTimeoutMs = CALL_DEADLINE_MS;
    switch (protocol) {
      case "grpc":
        // gRPC is always HTTP/2 in connect-node v2 (there is no httpVersion option).
        return createGrpcTransport({ baseUrl, sessionManager, interceptors, defaultTimeoutMs });
      case "connect":
        return createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent }, interceptors, defaultTimeoutMs });
      case "connect-json":
        return createConnectTransport({
          baseUrl,
          httpVersion: "1.1",
          nodeOptions: { agent },
          useBinaryFormat: false,
          interceptors,
          defaultTimeoutMs,
        });
      case "connect-get":
        return createConnectTransport({
          baseUrl,
          httpVersion: "1.1",
          nodeOptions: { agent },
          useHttpGet: true,
          interceptors,
          defaultTimeoutMs,
        });
      case "connect-h2":
        return createConnectTransport({ baseUrl, httpVersion: "2", sessionManager, interceptors, defaultTimeoutMs });
      case "grpc-web":
        return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent }, interceptors, defaultTimeoutMs });
    }
  }

  function clientsOn(t: Transport): Clients {
    return {
      users: createClient(UserService, t),
      conversations: createClient(ConversationService, t),
      messages: createClient(MessageService, t),
      events: createClient(EventService, t),
      search: createClient(SearchService, t),
      notifications: createClient(NotificationService, t),
      social: createClient(SocialService, t),
      media: createClient(MediaService, t),
      stories: createClient(StoryService, t),
      keys: createClient(KeyService, t),
      reports: createClient(ReportService, t),
      admin: createClient(AdminService, t),
      connections: createClient(ConnectionService, t),
      jobs: createClient(JobService, t),
      analytics: createClient(AnalyticsService, t),
    };
  }

  function tokenFor(userId: string, options: TokenOptions = {}): Promise<string> {
    return mintToken({ secret, issuer, audience, userId, ...options });
  }

  function authorizationInterceptor(authorization: () => Promise<string | undefined>): Interceptor {
    return (next) => async (req) => {
      const value = await authorization();
      if (value !== undefined) req.header.set("authorization", value);
      return next(req);
    };
  }

  function bearer(userId: string, options: TokenOptions): Interceptor {
    let token: Promise<string> | undefined;
    return authorizationInterceptor(async () => `Bearer ${await (token ??= tokenFor(userId, options))}`);
  }

  return {
    port,
    baseUrl,
    secret,
    issuer,
    audience,
    tokenFor,
    clientsFor(userId, protocol = "connect", options = {}) {
      return clientsOn(transportOn(shared, protocol, [bearer(userId, options)]));
    },
    clientsWithAuthorization(authorization, protocol = "connect") {
      return clientsOn(transportOn(shared, protocol, [authorizationInterceptor(async () => authorization)]));
    },
    isolatedClientsFor(userId, protocol = "connect", options = {}) {
      const own = openConnections();
      return { ...clientsOn(transportOn(own, protocol, [bearer(userId, options)])), close: () => closeConnectionsOf(own) };
    },
    transport: (protocol, interceptors) => transportOn(shared, protocol, interceptors),
    closeConnections: () => closeConnectionsOf(shared),
  };
}

/** Calls GetMe for each id, so the users exist and can be added to conversations. */
export async function registerUsers(server: RemoteServer, ids: readonly string[]): Promise<void> {
  const batch = 50;
  for (let i = 0; i < ids.length; i += batch) {
    await Promise.all(
      ids.slice(i, i + batch).map((id) => server.clientsFor(id, "connect").users.getMe({})),
    );
  }
}

/** Makes `count` fresh user ids with the prefix and registers them. */
export async function newUsers(server: RemoteServer, count: number, prefix = "user"): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => uniqueId(`${prefix}${i}`));
  await registerUsers(server, ids);
  return ids;
}

export interface FreshDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * A freshly created PostgreSQL database for nodes that share one (multi-node tests), or null
 * without DATABASE_URL: the embedded database cannot be shared between nodes.
 */
export async function createTestDatabase(): Promise<FreshDatabase | null> {
  return process.env.DATABASE_URL ? createFreshDatabase(process.env.DATABASE_URL) : null;
}

async function createFreshDatabase(adminUrl: string): Promise<FreshDatabase> {
  const name = `parley_test_${randomBytes(6).toString("hex")}`;
  await withAdminClient(adminUrl, (c) => c.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withAdminClient(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`)),
  };
}

async function withAdminClient(url: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

export async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
