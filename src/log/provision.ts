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
  /**
   * Copies of each stream and bucket on a cluster (default 1). A stream already there is scaled
   * to it; an existing presence bucket keeps its own (its entries live seconds anyway).
   */
  replicas?: number;
}

export async function provisionNats(connection: NatsConnection, subjects: Subjects, options: ProvisionOptions): Promise<void> {
  const jsm = await connection.jetstreamManager();
  const replicas = options.replicas ?? 1;
  // Republished events (relay, retries) are stored once within the duplicate window (which
  // NATS requires to be no longer than max_age).
  await ensureStream(jsm, fileStream(subjects.eventStream, subjects.allEvents, replicas, options.retentionMs, Math.min(2 * 60 * 1000, options.retentionMs)));
  // Work items (e.g. a story's expiry) wait for their consumer; a week outlives any of them.
  await ensureStream(jsm, fileStream(subjects.workStream, subjects.allWork, replicas, WORK_RETENTION_MS, 2 * 60 * 1000));
  await ensureStream(jsm, fileStream(subjects.pushStream, subjects.allPush, replicas, PUSH_RETENTION_MS, PUSH_DUPLICATE_WINDOW_MS));
  await connection.jetstream().views.kv(subjects.presenceBucket, { ttl: options.presenceTtlMs, history: 1, replicas });
}

/** A file-backed stream that keeps messages for maxAgeMs, dropping the oldest first. */
function fileStream(name: string, subject: string, replicas: number, maxAgeMs: number, duplicateWindowMs: number): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects: [subject],
    storage: StorageType.File,
    num_replicas: replicas,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: maxAgeMs * NANOS_PER_MS,
    duplicate_window: duplicateWindowMs * NANOS_PER_MS,
  };
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
