/**
 * Creates (or updates) the JetStream stream and KV bucket Parley needs. Runs at start-up,
 * before any business code publishes; works on nats-server 2.9 (one filter subject per
 * consumer, no 2.10 features).
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type NatsConnection, type StreamConfig } from "nats";
import type { Subjects } from "./subjects.ts";

const NANOS_PER_MS = 1_000_000;
const WORK_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
/** A push entry older than this is stale for a device anyway. */
const PUSH_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
/** The notifier republishes unconfirmed entries after a restart; within this window JetStream drops the repeats. */
const PUSH_DUPLICATE_WINDOW_MS = 30 * 60 * 1000;

export interface ProvisionOptions {
  /** How long the stream keeps events (the feed's replay window is served from PostgreSQL). */
  retentionMs: number;
  /** How long a presence entry lives without a heartbeat. */
  presenceTtlMs: number;
}

export async function provisionNats(connection: NatsConnection, subjects: Subjects, options: ProvisionOptions): Promise<void> {
  const jsm = await connection.jetstreamManager();
  const config: Partial<StreamConfig> & { name: string } = {
    name: subjects.eventStream,
    subjects: [subjects.allEvents],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: options.retentionMs * NANOS_PER_MS,
    // Republished events (relay, retries) are stored once within this window (which NATS
    // requires to be no longer than max_age).
    duplicate_window: Math.min(2 * 60 * 1000, options.retentionMs) * NANOS_PER_MS,
  };
  await ensureStream(jsm, config);
  await ensureStream(jsm, {
    name: subjects.workStream,
    subjects: [subjects.allWork],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    // Work items (e.g. a story's expiry) wait for their consumer; a week outlives any of them.
    max_age: WORK_RETENTION_MS * NANOS_PER_MS,
    duplicate_window: 2 * 60 * 1000 * NANOS_PER_MS,
  });
  await ensureStream(jsm, {
    name: subjects.pushStream,
    subjects: [subjects.allPush],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: PUSH_RETENTION_MS * NANOS_PER_MS,
    duplicate_window: PUSH_DUPLICATE_WINDOW_MS * NANOS_PER_MS,
  });
  await connection.jetstream().views.kv(subjects.presenceBucket, { ttl: options.presenceTtlMs, history: 1 });
}

/** Creates the stream, or brings an existing one to this configuration. */
async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    await jsm.streams.update(config.name, config);
  } catch (error) {
    if (!String(error).includes("stream not found")) throw error;
    await jsm.streams.add(config);
  }
}
