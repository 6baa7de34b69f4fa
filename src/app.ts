/**
 * Builds Parley from a Config: database (migrated), services, the one-port server and the
 * metrics endpoint. start() listens; stop() drains and closes everything in order.
 */
import { setTimeout as delay } from "node:timers/promises";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { connect as connectNats, type NatsConnection } from "nats";
import { pino, type Logger } from "pino";
import { createAuthInterceptor, createTokenVerifier, loadOrCreateDevSecret } from "./auth/index.ts";
import type { Config } from "./config.ts";
import { ConversationService } from "./conversations/index.ts";
import { migrate, openDatabase } from "./db/index.ts";
import { findConversationIdsOf, findRole } from "./conversations/conversation-repository.ts";
import { EventService, FeedHub, type FeedMemberships } from "./feed/index.ts";
import {
  createEventPublisher,
  createInProcessBus,
  createNatsBus,
  createOutboxRelay,
  createSubjects,
  openEventLog,
  provisionNats,
  type EventBus,
  type EventLogLayout,
  type PublishFaults,
} from "./log/index.ts";
import { createPresenceTracker } from "./presence/index.ts";
import { ReactionBatcher } from "./reactions/index.ts";
import { MessageService, SendBatcher } from "./messages/index.ts";
import { createRoutes } from "./routes.ts";
import { createSearchIndex, createSearchIndexer, createSearchMetrics, SearchService } from "./search/index.ts";
import { createCorsHandler } from "./server/cors.ts";
import { createRpcMetrics, startMetricsServer } from "./server/metrics.ts";
import { createObservabilityInterceptor } from "./server/observability-interceptor.ts";
import { createLeanGrpcHandler } from "./server/lean-grpc.ts";
import { REPLY_COMPRESSIONS } from "./server/reply-compression.ts";
import { createSinglePortServer } from "./server/single-port-server.ts";
import { createClientIpContextValues } from "./server/client-ip.ts";
import { createRateLimiting } from "./ratelimit/index.ts";
import { HealthStatus } from "./standard/health.ts";
import { KeyService } from "./keys/index.ts";
import { AdminService, createRestrictionInterceptor, ReportService, RestrictionCache } from "./moderation/index.ts";
import { AccountEraser, createErasureGuard, ErasureGate, UserDirectory, UserService, type ErasureFaults } from "./users/index.ts";
import { createWorkerRuntime, decodeStoredEvent } from "./workers/index.ts";
import { createNotifierSpec } from "./workers/notifier.ts";
import { createInProcessPushOutbox, createJetStreamPushOutbox, NotificationService, type PushOutbox } from "./notifications/index.ts";
import { ClamdClient, createFileBlobStore, createMalwareScanMetrics, createMalwareScanner, logClamdReachability, MediaService } from "./media/index.ts";
import { SocialService } from "./social/index.ts";
import { StoryAccess, StoryExpiry, StoryRemover, StoryService } from "./stories/index.ts";
import { RetentionPolicy, RetentionSweeper } from "./retention/index.ts";
import { ConnectionRegistry, ConnectionService, createRegistryMetrics } from "./connections/index.ts";
import { createJobs } from "./jobs/index.ts";
import { AnalyticsService, createAnalyticsSpec, prepareAnalytics } from "./analytics/index.ts";
import { createSmtpMailer, DigestSender } from "./email/index.ts";

export interface App {
  /** The API port; valid after start(). */
  readonly port: number;
  /** The metrics port, or null when metrics are off; valid after start(). */
  readonly metricsPort: number | null;
  readonly logger: Logger;
  /** Where pushed notifications go (the `<PREFIX>_PUSH` stream, or in-process when embedded). */
  readonly pushOutbox: PushOutbox;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface AppOptions {
  logger?: Logger;
  /** Test-only fault injection (e.g. lost publishes). */
  faults?: PublishFaults;
  /** Test-only fault injection into account erasure runs. */
  erasureFaults?: ErasureFaults;
}

/** How long open connections get to finish when the server stops. */
const SHUTDOWN_GRACE_MS = 5_000;
/**
 * Send batch lanes (one transaction each at a time) per node. Lanes split the event-log
 * partitions between them, so a node's batches never wait on each other's heads; more lanes
 * mean smaller batches and more commits per message. bench:send on one node, back to back:
 * 1 lane 1,687 msg/s (23 sends a batch), 2 lanes 1,572 (12), 4 lanes 1,228 (6), one lane per
 * partition ~1,000 (4). Two keep a second batch going while one commits, for several nodes.
 */
const SEND_BATCHES_IN_FLIGHT = 2;
/** Most message events per search index write (one bulk request or statement). */
const SEARCH_INDEX_BATCH = 256;
/** How long streams get to send their last frame when the server stops. */
const STREAM_DRAIN_MS = 2_000;

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: "parley" } });
  const database = await openDatabase({
    url: config.databaseUrl,
    embeddedPath: config.embeddedDatabasePath,
    poolSize: config.databasePoolSize,
    preparedStatements: config.preparedStatements,
    onConnectionError: (err) => logger.warn({ err }, "a database connection was closed by the server; the pool opens a new one"),
  });
  let log: EventLogLayout;
  try {
    const applied = await migrate(database.db);
    if (applied.length > 0) logger.info({ applied }, "applied migrations");
    log = await openEventLog(database.db, config.feed.eventPartitions);
  } catch (error) {
    await database.close();
    throw error;
  }

  let jwtSecret = config.jwt.secret;
  if (jwtSecret === null && config.jwt.jwksUrl === null) {
    jwtSecret = await loadOrCreateDevSecret(config.dataDir);
    logger.warn("JWT_SECRET is not set: using the development secret in the data dir (mint tokens with `npm run token`)");
  }
  const verify = createTokenVerifier({ ...config.jwt, secret: jwtSecret });

  const subjects = createSubjects(config.feed.natsPrefix);
  let nats: NatsConnection | null = null;
  let bus: EventBus;
  if (config.natsUrl !== null) {
    try {
      nats = await connectNats({ servers: config.natsUrl.split(","), name: `parley-${config.feed.nodeId}`, maxReconnectAttempts: -1 });
      await provisionNats(nats, subjects, {
        retentionMs: config.feed.replayWindowMs,
        presenceTtlMs: config.feed.presenceTtlMs,
        replicas: config.natsStreamReplicas,
      });
    } catch (error) {
      // Release what was opened, so a caller that retries (or a test) leaks nothing.
      await nats?.close();
      await database.close();
      throw error;
    }
    bus = createNatsBus({ connection: nats, subjects, onError: (error, what) => logger.warn({ err: error, what }, "NATS delivery failed") });
  } else {
    bus = createInProcessBus();
  }
  const publisher = createEventPublisher(bus, log, logger, options.faults);
  const workers = createWorkerRuntime({ nats, subjects, bus, logger });
  const pushOutbox = nats ? createJetStreamPushOutbox(nats, subjects) : createInProcessPushOutbox();
  let hub: FeedHub;
  const relay = createOutboxRelay({
    db: database.db,
    bus: nats ? bus : null,
    seenThrough: () => hub.position,
    replayWindowMs: config.feed.replayWindowMs,
    logger,
  });
  const restrictions = new RestrictionCache();
  hub = new FeedHub({
    db: database.db,
    bus,
    logger,
    bufferEvents: config.feed.bufferEvents,
    onFilled: (events) => relay.republish(events),
    onUserEvent: restrictions.observe,
  });
  const presence = createPresenceTracker({ nats, subjects, db: database.db, bus, nodeId: config.feed.nodeId, ttlMs: config.feed.presenceTtlMs, logger });

  // Message retention: every read filters by it; the sweeper (consumer nodes) deletes what passed it.
  const retention = new RetentionPolicy(config.retention.messageRetentionSeconds);
  const sends = new SendBatcher(database.db, log, {
    maxInFlight: Math.max(1, Math.min(SEND_BATCHES_IN_FLIGHT, config.databasePoolSize - 1)),
    onCommitted: (events) => publisher.publish(events),
    retention,
  });
  const reactions = new ReactionBatcher(database.db, log, (events) => publisher.publish(events), { maxInFlight: 2, retention });
  const memberships: FeedMemberships = {
    conversationIdsOf: (userId) => findConversationIdsOf(database.db, userId),
    isMember: async (conversationId, userId) => (await findRole(database.db, conversationId, userId)) !== undefined,
  };
  const health = new HealthStatus();
  // The gate tells the directory to forget ids being erased; the directory asks the gate.
  const erasureGate: ErasureGate = new ErasureGate({ db: database.db, logger, onSeen: (userId) => users.forget(userId) });
  const users = new UserDirectory(database.db, (userId) => erasureGate.isErasing(userId));
  const metrics = createRpcMetrics();
  const registry = config.registry.enabled
    ? new ConnectionRegistry({ db: database.db, nodeId: config.feed.nodeId, config: config.registry, logger, metrics: createRegistryMetrics(metrics.registry) })
    : null;
  const searchIndex = createSearchIndex(config.search, database.db);
  const indexer = createSearchIndexer({ index: searchIndex, metrics: createSearchMetrics(metrics.registry), logger });
  const shutdown = new AbortController();
  const blobs = createFileBlobStore(config.stories.mediaDir);
  const { clamd, connectTimeoutMs, scanTimeoutMs, failOpen } = config.malwareScan;
  const clamdClient = clamd === null ? null : new ClamdClient({ address: clamd, connectTimeoutMs, scanTimeoutMs });
  const scanner = clamdClient && createMalwareScanner({ client: clamdClient, failOpen, metrics: createMalwareScanMetrics(metrics.registry), logger });
  const storyAccess = new StoryAccess(database.db);
  const storyRemover = new StoryRemover({ db: database.db, blobs, publisher });
  const storyExpiry = new StoryExpiry({
    db: database.db,
    remover: storyRemover,
    workers,
    subjects,
    logger,
    sweepIntervalMs: config.stories.sweepIntervalMs,
    runConsumer: config.runConsumers && config.stories.expiryConsumer,
  });
  const retentionSweeper = new RetentionSweeper({
    db: database.db,
    policy: retention,
    index: searchIndex,
    blobs,
    logger,
    intervalMs: config.retention.sweepIntervalMs,
  });
  // Exports and reindexing as jobs: chunks on the work stream, state in PostgreSQL (src/jobs).
  const jobs = createJobs({ db: database.db, publisher, workers, subjects, config: config.jobs, blobs, retention, search: searchIndex, logger });
  // Email digests: consumer nodes only, and only with an SMTP server to send through.
  const { smtpUrl, from: emailFrom, ...digestTiming } = config.email;
  const digests =
    config.runConsumers && smtpUrl !== null
      ? new DigestSender({ db: database.db, mailer: createSmtpMailer(smtpUrl, emailFrom), retention, logger, ...digestTiming })
      : null;
  const conversations = new ConversationService(database.db, config.limits, publisher, retention);
  const messages = new MessageService(database.db, sends, reactions, config.limits, publisher, retention);
  const eraser = new AccountEraser({
    db: database.db,
    publisher,
    gate: erasureGate,
    conversations,
    search: searchIndex,
    stories: storyRemover,
    blobs,
    push: pushOutbox,
    jobs: jobs.scheduler,
    logger,
    sweepIntervalMs: config.runConsumers ? config.erasure.sweepIntervalMs : null,
    ...(options.erasureFaults && { faults: options.erasureFaults }),
  });
  const routes = createRoutes({
    users: new UserService(database.db, config.limits, eraser),
    conversations,
    messages,
    events: new EventService({ db: database.db, log, memberships, hub, bus, presence, feed: config.feed, retention, requireUnrestricted: restrictions.requireUnrestricted, registry }),
    search: new SearchService(database.db, searchIndex, retention),
    keys: new KeyService(database.db, publisher),
    reports: new ReportService(database.db, storyAccess),
    admin: new AdminService({ db: database.db, publisher, stories: storyRemover, restrictions, limits: config.limits }),
    notifications: new NotificationService(database.db, retention),
    social: new SocialService(database.db, config.limits),
    media: new MediaService({ db: database.db, blobs, maxBytes: config.stories.maxMediaBytes, mayRead: storyAccess.mayReadMedia, scanner, retention }),
    stories: new StoryService({
      db: database.db,
      access: storyAccess,
      remover: storyRemover,
      expiry: storyExpiry,
      publisher,
      conversations,
      messages,
      sends,
      config: config.stories,
      limits: config.limits,
    }),
    connections: new ConnectionService({ db: database.db, publisher, config: config.registry }),
    jobs: jobs.service,
    analytics: new AnalyticsService({ db: database.db, log }),
    health,
  });
  // Rate limits (src/ratelimit): the auth-failure limit wraps auth; the write limit comes after
  // suspensions, so a restricted user's refused calls take no tokens.
  const rateLimits = await createRateLimiting(config.rateLimits, logger, metrics.registry);
  const interceptors = [
    createObservabilityInterceptor(logger, metrics),
    ...(rateLimits ? [rateLimits.authFailureInterceptor] : []),
    createAuthInterceptor({ verify, ensureUser: (id) => users.ensure(id) }),
    createErasureGuard(erasureGate),
    createRestrictionInterceptor(restrictions),
    ...(rateLimits ? [rateLimits.writeInterceptor] : []),
  ];
  // Every call knows its client's address (X-Forwarded-For behind TRUST_PROXY_HOPS proxies).
  const contextValues = createClientIpContextValues(config.trustProxyHops);
  // Room for a full-size media upload plus its framing; a larger one is refused before it is buffered.
  const readMaxBytes = config.stories.maxMediaBytes + 64 * 1024;
  const connectHandler = connectNodeAdapter({ routes, shutdownSignal: shutdown.signal, readMaxBytes, interceptors, contextValues, acceptCompression: REPLY_COMPRESSIONS });
  // Unary and server-streaming gRPC calls skip connect-node's per-call pipeline (see the module).
  const leanGrpc = createLeanGrpcHandler({ routes, interceptors, readMaxBytes, shutdownSignal: shutdown.signal, contextValues });
  const cors = createCorsHandler(config.corsOrigins);
  const server = createSinglePortServer((req, res) => {
    if (!cors(req, res) && !leanGrpc(req, res)) connectHandler(req, res);
  });

  let port = 0;
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | null = null;
  return {
    get port() {
      return port;
    },
    get metricsPort() {
      return metricsServer?.port ?? null;
    },
    logger,
    pushOutbox,
    async start() {
      await hub.start();
      // After the hub: a restriction committed meanwhile is in the table or arrives as an event.
      await restrictions.load(database.db);
      await relay.start();
      await registry?.start();
      if (config.runConsumers) {
        await workers.startConsumer({
          name: "search-indexer",
          filterSubject: subjects.eventsOfCategory("message"),
          decode: decodeStoredEvent,
          handle: indexer.handle,
          batchSize: SEARCH_INDEX_BATCH,
        });
        await workers.startConsumer(createNotifierSpec({ db: database.db, events: publisher, push: pushOutbox, subjects }));
        await jobs.startWorkers();
        if (config.analytics.consumer) {
          await prepareAnalytics(database.db, log, logger);
          await workers.startConsumer(createAnalyticsSpec({ db: database.db, subjects, logger }));
        }
      }
      await storyExpiry.start();
      // Not awaited: a hung clamd must not hold up the start (the check ends within its timeouts).
      if (clamd !== null) void logClamdReachability(clamd, failOpen, logger);
      await erasureGate.start();
      eraser.start();
      if (config.runConsumers) retentionSweeper.start();
      digests?.start();
      port = await server.listen(config.port, config.host);
      if (config.metricsPort !== null) metricsServer = await startMetricsServer(metrics.registry, config.metricsPort, config.host);
      logger.info({ port, metricsPort: metricsServer?.port ?? null, database: database.embedded ? "embedded" : "postgres", rateLimits: rateLimits?.limiter.storeName ?? "off" }, "parley is serving");
    },
    async stop() {
      health.shutdown();
      // Streams end with a resumable frame first; then in-flight calls are cancelled.
      hub.drainAll();
      for (let waited = 0; hub.openStreams > 0 && waited < STREAM_DRAIN_MS; waited += 50) await delay(50);
      shutdown.abort();
      await server.close(SHUTDOWN_GRACE_MS);
      await registry?.stop();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await sends.drain();
      await reactions.drain();
      await storyExpiry.stop();
      await eraser.stop();
      await erasureGate.stop();
      await retentionSweeper.stop();
      await jobs.stop();
      await digests?.stop();
      // Every consumer stops with its batch in hand done; then what they recorded is published.
      await workers.close();
      await publisher.flush();
      await relay.stop();
      await hub.stop();
      await searchIndex.close();
      await rateLimits?.close();
      await presence.close();
      await bus.close();
      await nats?.drain();
      await database.close();
      logger.info("parley stopped");
    },
  };
}
