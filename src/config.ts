/**
 * Reads the environment once at start-up, validates it, and returns a frozen Config.
 * A bad value stops the process with a message naming the variable, so a typo never
 * turns into a silently different deployment.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { MAX_PARTITIONS } from "./log/partitions.ts";
import { parseClamdUrl, type ClamdAddress } from "./media/clamd-client.ts";

/** Event log partitions when EVENT_PARTITIONS is not set (chosen by measurement: see docs/). */
const DEFAULT_EVENT_PARTITIONS = 16;

/** Size and count bounds; every one can be changed through the environment. */
export interface Limits {
  /** Largest plain-text message body, in UTF-8 bytes. */
  readonly maxMessageBytes: number;
  /** Largest encrypted envelope ciphertext, in bytes. */
  readonly maxEnvelopeBytes: number;
  /** Most members a group may have, the creator included. */
  readonly maxGroupMembers: number;
  /** Largest page any list call returns. */
  readonly maxPageSize: number;
  /** Longest group name, in characters. */
  readonly maxNameLength: number;
  /** Longest group description, in characters. */
  readonly maxDescriptionLength: number;
  /** Longest display name, in characters. */
  readonly maxDisplayNameLength: number;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Port of the Prometheus /metrics endpoint; null when disabled. */
  readonly metricsPort: number | null;
  /** Where embedded state lives (PGlite files, the dev JWT secret). */
  readonly dataDir: string;
  /** PostgreSQL URL; null means the embedded PGlite database. */
  readonly databaseUrl: string | null;
  /** PGlite location when databaseUrl is null: a directory, or "memory://" for RAM. */
  readonly embeddedDatabasePath: string;
  /** Connections in the PostgreSQL pool. */
  readonly databasePoolSize: number;
  /** PREPARED_STATEMENTS=off: the hottest reads are planned on every call (for poolers that cannot keep named statements). */
  readonly preparedStatements: boolean;
  /** NATS URL, or several comma-separated (the servers of a cluster); null means the in-process bus. */
  readonly natsUrl: string | null;
  /** Copies JetStream keeps of each of Parley's streams (3 on a three-server cluster survives losing one). */
  readonly natsStreamReplicas: number;
  /**
   * Whether this node runs the durable consumers (search indexer, notifier, story expiry).
   * Off makes it an API-only node; another node must run them (so off needs NATS).
   */
  readonly runConsumers: boolean;
  readonly jwt: JwtConfig;
  readonly feed: FeedConfig;
  /** Origins allowed by CORS; empty disables CORS, ["*"] allows any. */
  readonly corsOrigins: readonly string[];
  readonly logLevel: string;
  readonly limits: Limits;
  readonly search: SearchConfig;
  readonly stories: StoriesConfig;
  readonly malwareScan: MalwareScanConfig;
  /** How many reverse proxies in front of Parley append to X-Forwarded-For (0: use the socket's address). */
  readonly trustProxyHops: number;
  readonly rateLimits: RateLimitConfig;
  readonly erasure: ErasureConfig;
  readonly retention: RetentionConfig;
  readonly jobs: JobsConfig;
  readonly analytics: AnalyticsConfig;
  readonly email: EmailConfig;
  readonly registry: RegistryConfig;
}

/** The connection registry (ConnectionService): every live stream, in PostgreSQL. */
export interface RegistryConfig {
  /** CONNECTION_REGISTRY=off: streams are not recorded and ConnectionService answers FAILED_PRECONDITION. */
  readonly enabled: boolean;
  /** How often a node confirms in the database that it (and so its streams) is alive. */
  readonly heartbeatMs: number;
  /** A node silent for longer is dead: its streams leave every listing, and a sweep deletes them. */
  readonly nodeTtlMs: number;
}

/** Asynchronous jobs (JobService: exports, reindex). */
export interface JobsConfig {
  /**
   * Where chunk parts and outputs are written. Like MEDIA_DIR, every node must see the same
   * directory (a shared volume): a chunk written on one node is assembled on another.
   */
  readonly dir: string;
  /** How long a finished job's output is kept before the sweep deletes it. */
  readonly outputTtlMs: number;
  /** Messages per chunk of a conversation export (one work item each). */
  readonly chunkMessages: number;
  /** How often consumer nodes delete expired outputs and republish the work of stalled jobs. */
  readonly sweepIntervalMs: number;
  /** Chunks one consumer node works on at once. */
  readonly concurrency: number;
}

/** Usage rollups (src/analytics). */
export interface AnalyticsConfig {
  /**
   * ANALYTICS=off: this node does not run the analytics consumer (nodes with CONSUMERS=on run
   * it by default). The figures stop moving; after turning it back on, `npm run
   * analytics:rebuild` makes them exact again if the event log pruned events meanwhile.
   */
  readonly consumer: boolean;
}

/** Email digests of missed mentions and direct messages (src/email/). */
export interface EmailConfig {
  /** smtp:// or smtps:// URL, credentials optional; null means no digests are sent (settings still work). */
  readonly smtpUrl: string | null;
  /** The From header of every digest. */
  readonly from: string;
  /** How often a consumer node looks for users due a digest. */
  readonly sweepIntervalMs: number;
  /** How long something may stay unread before it counts as missed ("read in time" is within this). */
  readonly graceMs: number;
  /** The least time between two HOURLY digests (an hour; shorter only for tests). */
  readonly hourlyPeriodMs: number;
  /** The least time between two DAILY digests (a day; shorter only for tests). */
  readonly dailyPeriodMs: number;
}

/** Malware scanning of uploads with ClamAV's clamd. */
export interface MalwareScanConfig {
  /** Where clamd listens; null means uploads are not scanned. */
  readonly clamd: ClamdAddress | null;
  readonly connectTimeoutMs: number;
  /** How long one scan may take once connected (sending the upload and getting the verdict). */
  readonly scanTimeoutMs: number;
  /** Store uploads clamd could not scan (logged and counted) instead of refusing them. */
  readonly failOpen: boolean;
}

/** Token-bucket rate limits (docs/rate-limits.md). */
export interface RateLimitConfig {
  /** RATE_LIMITS=off turns every limit off. */
  readonly enabled: boolean;
  /** Writes per user. */
  readonly user: BucketLimitConfig;
  /** Writes per client IP (per /64 for IPv6). */
  readonly ip: BucketLimitConfig;
  /** Failed authentications per client IP. */
  readonly authFailures: BucketLimitConfig;
  /** Redis holding the buckets all nodes share; null keeps them in this process (one node). */
  readonly redisUrl: string | null;
  /** Starts every bucket key in Redis, so deployments (and test runs) sharing one Redis never share buckets. */
  readonly keyPrefix: string;
  /** What a node does while Redis is unreachable: limit locally, admit everything, or refuse. */
  readonly storeDown: "local" | "open" | "closed";
}

export interface BucketLimitConfig {
  readonly ratePerSecond: number;
  readonly burst: number;
}

/** Account erasure (UserService.DeleteAccount). */
export interface ErasureConfig {
  /** How often a consumer node looks for erasures a stopped node left unfinished, and finishes them. */
  readonly sweepIntervalMs: number;
}

/** Message retention: the deployment's; a conversation may set a shorter one of its own. */
export interface RetentionConfig {
  /** How long messages (with their media, edits and reactions) are kept, in seconds; null keeps them for good. */
  readonly messageRetentionSeconds: number | null;
  /** How often the retention sweeper deletes what passed retention (on nodes that run the consumers). */
  readonly sweepIntervalMs: number;
}

/** Where messages are indexed for search. */
export interface SearchConfig {
  /** OpenSearch URL; null means PostgreSQL full-text in the database. */
  readonly opensearchUrl: string | null;
  /** Names OpenSearch's index template, indices (`<name>-v<time>`) and aliases (`<name>`, `<name>-write`). */
  readonly opensearchIndex: string;
  /**
   * PostgreSQL: about how many rows opening a relevance window of a very common word reads
   * (SEARCH_WINDOW_READ_ROWS, default 3,000); a window then holds about this many times the
   * word's share of messages. Smaller is faster per page and ranks fewer matches together.
   */
  readonly windowReadRows?: number;
}

/** Stories and their media. */
export interface StoriesConfig {
  /** How long a story lives: expires_at = created_at + this. */
  readonly ttlMs: number;
  /** How often the sweep deletes expired stories the expiry consumer missed. */
  readonly sweepIntervalMs: number;
  /** Whether this node runs the story-expiry consumer (the sweep always runs). */
  readonly expiryConsumer: boolean;
  /** Where the file blob store keeps media bytes. */
  readonly mediaDir: string;
  /** Largest upload, in bytes. */
  readonly maxMediaBytes: number;
  /** Longest story caption, in characters. */
  readonly maxCaptionLength: number;
}

/** The real-time feed and its signals. */
export interface FeedConfig {
  /** Prefix of every NATS subject, stream and bucket. */
  readonly natsPrefix: string;
  /** This node's name in the presence registry. */
  readonly nodeId: string;
  /** How far back a cursor can be replayed; older ones get resync_required. */
  readonly replayWindowMs: number;
  /** Partitions of the event log (fixed per deployment; see `npm run event-partitions`). */
  readonly eventPartitions: number;
  /** Live events buffered per stream before a slow reader is ended with its cursor. */
  readonly bufferEvents: number;
  /** Idle time after which a stream gets a heartbeat frame. */
  readonly heartbeatMs: number;
  /** How long a typing indicator lasts. */
  readonly typingTtlMs: number;
  /** How long a presence entry lives without a heartbeat from its node. */
  readonly presenceTtlMs: number;
}

export interface JwtConfig {
  /** HS256 shared secret; null when a JWKS URL is used instead. */
  readonly secret: string | null;
  /** Where to fetch the signing keys for RS256/ES256/EdDSA tokens. */
  readonly jwksUrl: string | null;
  readonly issuer: string;
  readonly audience: string;
}

/** Thrown for an invalid environment; main prints the message and exits. */
export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

export const DEFAULT_ISSUER = "parley";
export const DEFAULT_AUDIENCE = "parley";

/** Builds the Config from an environment (process.env by default). */
export function loadConfig(env: Env = process.env): Config {
  const dataDir = path.resolve(str(env, "DATA_DIR", "./data"));
  const secret = env.JWT_SECRET ?? null;
  const jwksUrl = env.JWT_JWKS_URL ? url(env, "JWT_JWKS_URL", ["http:", "https:"]) : null;
  if (secret !== null && jwksUrl !== null) {
    throw new ConfigError("Set either JWT_SECRET or JWT_JWKS_URL, not both.");
  }
  if (secret !== null && Buffer.byteLength(secret) < 32) {
    throw new ConfigError("JWT_SECRET must be at least 32 bytes long (HS256 needs a 256-bit key).");
  }
  const metrics = str(env, "METRICS_PORT", "9464");
  return Object.freeze({
    host: str(env, "HOST", "0.0.0.0"),
    port: int(env, "PORT", 8080, 0, 65535),
    metricsPort: metrics === "off" ? null : int(env, "METRICS_PORT", 9464, 0, 65535),
    dataDir,
    databaseUrl: env.DATABASE_URL ? url(env, "DATABASE_URL", ["postgres:", "postgresql:"]) : null,
    embeddedDatabasePath: str(env, "PGLITE_PATH", path.join(dataDir, "pglite")),
    databasePoolSize: int(env, "DATABASE_POOL_SIZE", 10, 1, 1000),
    preparedStatements: oneOf(env, "PREPARED_STATEMENTS", "on", ["on", "off"]) === "on",
    natsUrl: env.NATS_URL ? urls(env, "NATS_URL", ["nats:", "tls:"]) : null,
    natsStreamReplicas: int(env, "NATS_STREAM_REPLICAS", 1, 1, 5),
    runConsumers: consumersSetting(env),
    jwt: Object.freeze({
      secret,
      jwksUrl,
      issuer: str(env, "JWT_ISSUER", DEFAULT_ISSUER),
      audience: str(env, "JWT_AUDIENCE", DEFAULT_AUDIENCE),
    }),
    feed: Object.freeze({
      natsPrefix: natsPrefix(env),
      nodeId: str(env, "NODE_ID", `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`).replace(/[^A-Za-z0-9_-]/g, "_"),
      replayWindowMs: int(env, "EVENT_REPLAY_WINDOW_SECONDS", 3 * 24 * 3600, 1, 365 * 24 * 3600) * 1000,
      eventPartitions: int(env, "EVENT_PARTITIONS", DEFAULT_EVENT_PARTITIONS, 1, MAX_PARTITIONS),
      bufferEvents: int(env, "FEED_BUFFER_EVENTS", 1000, 1, 1_000_000),
      heartbeatMs: int(env, "FEED_HEARTBEAT_SECONDS", 15, 1, 3600) * 1000,
      typingTtlMs: int(env, "TYPING_TTL_SECONDS", 5, 1, 60) * 1000,
      presenceTtlMs: int(env, "PRESENCE_TTL_SECONDS", 30, 1, 3600) * 1000,
    }),
    corsOrigins: Object.freeze(list(env, "CORS_ORIGINS")),
    logLevel: oneOf(env, "LOG_LEVEL", "info", ["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    limits: Object.freeze({
      maxMessageBytes: int(env, "MAX_MESSAGE_BYTES", 16 * 1024, 1, 1024 * 1024),
      maxEnvelopeBytes: int(env, "MAX_ENVELOPE_BYTES", 64 * 1024, 1, 4 * 1024 * 1024),
      maxGroupMembers: int(env, "MAX_GROUP_MEMBERS", 500, 3, 100_000),
      maxPageSize: int(env, "MAX_PAGE_SIZE", 200, 1, 10_000),
      maxNameLength: int(env, "MAX_NAME_LENGTH", 100, 1, 10_000),
      maxDescriptionLength: int(env, "MAX_DESCRIPTION_LENGTH", 1000, 0, 100_000),
      maxDisplayNameLength: int(env, "MAX_DISPLAY_NAME_LENGTH", 64, 1, 10_000),
    }),
    search: Object.freeze({
      opensearchUrl: env.OPENSEARCH_URL ? url(env, "OPENSEARCH_URL", ["http:", "https:"]) : null,
      opensearchIndex: opensearchIndex(env),
      windowReadRows: int(env, "SEARCH_WINDOW_READ_ROWS", 3000, 2, 1_000_000),
    }),
    analytics: Object.freeze({ consumer: oneOf(env, "ANALYTICS", "on", ["on", "off"]) === "on" }),
    stories: Object.freeze({
      ttlMs: int(env, "STORY_TTL_SECONDS", 24 * 3600, 1, 30 * 24 * 3600) * 1000,
      sweepIntervalMs: int(env, "STORY_SWEEP_INTERVAL_SECONDS", 60, 1, 24 * 3600) * 1000,
      expiryConsumer: oneOf(env, "STORY_EXPIRY_CONSUMER", "on", ["on", "off"]) === "on",
      mediaDir: path.resolve(str(env, "MEDIA_DIR", path.join(dataDir, "media"))),
      maxMediaBytes: int(env, "MAX_MEDIA_BYTES", 10 * 1024 * 1024, 1, 1024 * 1024 * 1024),
      maxCaptionLength: int(env, "MAX_CAPTION_LENGTH", 500, 0, 100_000),
    }),
    malwareScan: Object.freeze({
      clamd: clamdAddress(env),
      connectTimeoutMs: int(env, "CLAMD_CONNECT_TIMEOUT_MS", 2_000, 1, 600_000),
      scanTimeoutMs: int(env, "CLAMD_SCAN_TIMEOUT_MS", 30_000, 1, 3_600_000),
      failOpen: oneOf(env, "CLAMD_FAIL_OPEN", "false", ["true", "false"]) === "true",
    }),
    trustProxyHops: int(env, "TRUST_PROXY_HOPS", 0, 0, 10),
    rateLimits: rateLimitConfig(env),
    erasure: Object.freeze({
      sweepIntervalMs: int(env, "ERASURE_SWEEP_INTERVAL_SECONDS", 60, 1, 24 * 3600) * 1000,
    }),
    retention: retentionSettings(env),
    jobs: Object.freeze({
      dir: path.resolve(str(env, "JOBS_DIR", path.join(dataDir, "jobs"))),
      outputTtlMs: int(env, "JOB_OUTPUT_TTL_HOURS", 168, 1, 24 * 365) * 3600 * 1000,
      chunkMessages: int(env, "JOB_CHUNK_MESSAGES", 5000, 1, 1_000_000),
      sweepIntervalMs: int(env, "JOB_SWEEP_INTERVAL_SECONDS", 30, 1, 24 * 3600) * 1000,
      concurrency: int(env, "JOB_RUNNER_CONCURRENCY", 4, 1, 64),
    }),
    email: emailSettings(env),
    registry: registrySettings(env),
  });
}

function registrySettings(env: Env): RegistryConfig {
  const heartbeatMs = int(env, "REGISTRY_HEARTBEAT_SECONDS", 5, 1, 3600) * 1000;
  const nodeTtlMs = int(env, "REGISTRY_NODE_TTL_SECONDS", 15, 2, 24 * 3600) * 1000;
  // A TTL no longer than the heartbeat would drop live nodes between two of their heartbeats.
  if (nodeTtlMs <= heartbeatMs) throw new ConfigError("REGISTRY_NODE_TTL_SECONDS must be longer than REGISTRY_HEARTBEAT_SECONDS.");
  return Object.freeze({ enabled: oneOf(env, "CONNECTION_REGISTRY", "on", ["on", "off"]) === "on", heartbeatMs, nodeTtlMs });
}

function emailSettings(env: Env): EmailConfig {
  const from = str(env, "EMAIL_FROM", "Parley <no-reply@localhost>");
  if (/[\r\n]/.test(from)) throw new ConfigError("EMAIL_FROM must be one line.");
  return Object.freeze({
    smtpUrl: env.SMTP_URL ? url(env, "SMTP_URL", ["smtp:", "smtps:"]) : null,
    from,
    sweepIntervalMs: int(env, "EMAIL_DIGEST_SWEEP_SECONDS", 60, 1, 24 * 3600) * 1000,
    graceMs: int(env, "EMAIL_DIGEST_GRACE_SECONDS", 600, 0, 7 * 24 * 3600) * 1000,
    hourlyPeriodMs: int(env, "EMAIL_DIGEST_HOURLY_SECONDS", 3600, 1, 3600) * 1000,
    dailyPeriodMs: int(env, "EMAIL_DIGEST_DAILY_SECONDS", 24 * 3600, 1, 24 * 3600) * 1000,
  });
}

/** Longest retention a deployment (or a conversation) can set: 100 years. */
export const MAX_RETENTION_DAYS = 36_500;

function retentionSettings(env: Env): RetentionConfig {
  const days = int(env, "MESSAGE_RETENTION_DAYS", 0, 0, MAX_RETENTION_DAYS);
  return Object.freeze({
    messageRetentionSeconds: days === 0 ? null : days * 24 * 3600,
    sweepIntervalMs: int(env, "RETENTION_SWEEP_INTERVAL_SECONDS", 60, 1, 24 * 3600) * 1000,
  });
}

function clamdAddress(env: Env): ClamdAddress | null {
  const raw = env.CLAMD_URL;
  if (raw === undefined || raw === "") return null;
  try {
    return Object.freeze(parseClamdUrl(raw));
  } catch (error) {
    throw new ConfigError(`CLAMD_URL ${(error as Error).message}.`);
  }
}

/** Most tokens per second or in a burst any bucket may be given (high enough to mean "never limited"). */
const MAX_RATE_LIMIT = 1_000_000_000;

function rateLimitConfig(env: Env): RateLimitConfig {
  const bucket = (name: string, rate: number, burst: number) =>
    Object.freeze({
      ratePerSecond: positive(env, `RATE_LIMIT_${name}_PER_SECOND`, rate, MAX_RATE_LIMIT),
      burst: int(env, `RATE_LIMIT_${name}_BURST`, burst, 1, MAX_RATE_LIMIT),
    });
  const keyPrefix = str(env, "RATE_LIMIT_KEY_PREFIX", "parley:rl");
  if (!/^[A-Za-z0-9_:.-]{1,64}$/.test(keyPrefix)) throw new ConfigError("RATE_LIMIT_KEY_PREFIX may hold only letters, digits, _ : . and - (at most 64).");
  return Object.freeze({
    enabled: oneOf(env, "RATE_LIMITS", "on", ["on", "off"]) === "on",
    // A person types and taps far below 25 writes a second; the burst covers an outbox flushed after being offline.
    user: bucket("USER", 25, 100),
    // Carrier-grade NAT puts thousands of subscribers behind one address.
    ip: bucket("IP", 500, 2_000),
    // Expired tokens fail once before a client refreshes them, so a NAT sees some failures all the time.
    authFailures: bucket("AUTH_FAILURES", 5, 100),
    redisUrl: env.REDIS_URL ? url(env, "REDIS_URL", ["redis:", "rediss:"]) : null,
    keyPrefix,
    storeDown: oneOf(env, "RATE_LIMIT_STORE_DOWN", "local", ["local", "open", "closed"]) as RateLimitConfig["storeDown"],
  });
}

/** A number greater than 0 and at most max (fractions allowed, e.g. 0.5 per second). */
function positive(env: Env, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new ConfigError(`${name} must be a number greater than 0 and at most ${max}, got "${raw}".`);
  }
  return value;
}

function consumersSetting(env: Env): boolean {
  const on = oneOf(env, "CONSUMERS", "on", ["on", "off"]) === "on";
  if (!on && !env.NATS_URL) throw new ConfigError("CONSUMERS=off needs NATS_URL: without NATS no other node can run the consumers.");
  return on;
}

function natsPrefix(env: Env): string {
  const prefix = str(env, "NATS_PREFIX", "parley");
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(prefix)) throw new ConfigError("NATS_PREFIX may hold only letters, digits, _ and - (at most 64).");
  return prefix;
}

function opensearchIndex(env: Env): string {
  const name = str(env, "OPENSEARCH_INDEX", "parley-messages");
  if (!/^[a-z0-9][a-z0-9_-]{0,100}$/.test(name)) throw new ConfigError("OPENSEARCH_INDEX may hold only lowercase letters, digits, _ and - (at most 101).");
  return name;
}

function str(env: Env, name: string, fallback: string): string {
  const value = env[name];
  return value === undefined || value === "" ? fallback : value;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}".`);
  }
  return value;
}

/** A comma-separated list of URLs, each checked like url(); returned comma-separated, without spaces. */
function urls(env: Env, name: string, protocols: string[]): string {
  return (env[name] ?? "")
    .split(",")
    .map((one) => url({ [name]: one.trim() }, name, protocols))
    .join(",");
}

function url(env: Env, name: string, protocols: string[]): string {
  const raw = env[name] ?? "";
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} is not a valid URL.`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must start with ${protocols.map((p) => p + "//").join(" or ")}.`);
  }
  return raw;
}

function list(env: Env, name: string): string[] {
  return str(env, name, "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function oneOf(env: Env, name: string, fallback: string, allowed: string[]): string {
  const value = str(env, name, fallback);
  if (!allowed.includes(value)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${value}".`);
  }
  return value;
}
