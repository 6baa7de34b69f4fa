/**
 * Presence shared by all nodes through a JetStream KV bucket with a TTL.
 *
 * One key per user (`u.<base64url user id>`) whose value lists the nodes holding a stream of
 * that user, each with an expiry: `{"<nodeId>": <expires at, epoch ms>}`. Every write is a
 * compare-and-set on the key's revision, so "was anyone holding them?" and "is anyone left?"
 * are answered by the very write that changes the answer: exactly one node announces each
 * online/offline transition, even when nodes race.
 *
 * Why not one key per (user, node): asking "does any key of this user remain?" then needs a
 * wildcard (`<user>.*`), and on nats-server 2.9 every wildcard lookup (kv.keys, stream info
 * with subjects_filter, get next_by_subj) scans the whole bucket: bench/presence-check.ts
 * measured 0.3–1.7 ms of server CPU per check at 1,500 keys and 4–34 ms at 30,000 (kv.keys
 * the worst), against a flat 30–40 µs for an exact-key get and 40–80 µs for a
 * compare-and-set put at both sizes.
 *
 * Heartbeat: every ttl/3 one timer re-writes this node's expiry in the keys of all users it
 * holds: one compare-and-set each while this node is the user's only holder, a read and a
 * compare-and-set when other nodes hold them too (they write the key as well).
 * A node that dies stops refreshing: its entries expire (readers ignore them) and a key that
 * nobody refreshes disappears with the bucket's TTL, so lookups report the user offline
 * after at most the TTL. Nobody announces that change and last_seen_at keeps the time of
 * the user's last clean disconnect.
 */
import type { Kysely } from "kysely";
import type { KV, KvEntry, NatsConnection } from "nats";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { EventBus } from "../log/event-bus.ts";
import { subjectToken, type Subjects } from "../log/subjects.ts";
import { createLocalPresence, type PresenceRegistry } from "./local-presence.ts";
import { createPresenceAnnouncer } from "./presence-announcer.ts";
import type { PresenceTracker } from "./presence-tracker.ts";

export interface NatsPresenceTrackerOptions {
  connection: NatsConnection;
  subjects: Subjects;
  db: Kysely<Database>;
  bus: EventBus;
  /** Unique among the running nodes (any string); a restarted node may reuse its id. */
  nodeId: string;
  /** How long a node's hold on a user lasts without a heartbeat; the bucket's TTL should match. */
  ttlMs: number;
  logger: Pick<Logger, "warn">;
  /** How long close() waits for NATS (default: the smaller of ttlMs and 5 s). */
  closeTimeoutMs?: number;
}

const NANOS_PER_MS = 1_000_000;
/** JetStream's "wrong last sequence": someone else wrote the key since we read it. */
const WRONG_LAST_SEQUENCE = 10071;
/** Compare-and-set attempts before giving up; each loss means another node made progress. */
const MAX_ATTEMPTS = 16;

/** A user's key as read (or last written) by this node. */
interface KeyState {
  /** Revision to compare against; 0 when the key has no message. */
  revision: number;
  /** Node id → expiry (epoch ms). */
  holders: Map<string, number>;
}

/**
 * Binds to the presence bucket (provisioned beforehand by provisionNats) in the background;
 * operations wait for it. A missing bucket, or one without a TTL, fails every operation
 * (logged), never the caller of streamOpened/streamClosed.
 */
export function createNatsPresenceTracker(options: NatsPresenceTrackerOptions): PresenceTracker {
  const { connection, subjects, db, bus, nodeId, ttlMs, logger } = options;
  const bucket = subjects.presenceBucket;
  const kv = (async () => {
    const jsm = await connection.jetstreamManager();
    let bucketTtlMs: number;
    try {
      bucketTtlMs = (await jsm.streams.info(`KV_${bucket}`)).config.max_age / NANOS_PER_MS;
    } catch (error) {
      throw new Error(`presence bucket ${bucket} is not provisioned (${String(error)})`);
    }
    if (!(bucketTtlMs > 0)) throw new Error(`presence bucket ${bucket} has no TTL`);
    // Entries carry their own expiry (ttlMs), so lookups follow ttlMs whatever the bucket's
    // TTL; that TTL only removes abandoned keys, but below the heartbeat interval it would drop
    // live ones. (provisionNats leaves the TTL of an existing bucket as it was.)
    if (bucketTtlMs <= ttlMs / 3) throw new Error(`presence bucket ${bucket} has a TTL of ${bucketTtlMs} ms, not above the heartbeat interval (${ttlMs / 3} ms)`);
    if (bucketTtlMs !== ttlMs) logger.warn({ bucket, bucketTtlMs, ttlMs }, "the presence bucket's TTL differs from the configured presence TTL");
    // Bound without direct get: reads go to the stream leader, so a read is never behind a
    // write this node already saw acknowledged.
    return connection.jetstream().views.kv(bucket, { bindOnly: true, allow_direct: false });
  })();
  kv.catch((error: unknown) => logger.warn({ err: error }, "presence is unavailable"));

  return createLocalPresence({
    registry: createKvRegistry(kv, connection, nodeId, ttlMs),
    announcer: createPresenceAnnouncer({ db, bus }),
    logger,
    closeTimeoutMs: options.closeTimeoutMs ?? Math.min(ttlMs, 5_000),
  });
}

function createKvRegistry(bound: Promise<KV>, connection: NatsConnection, nodeId: string, ttlMs: number): PresenceRegistry {
  /** What this node last wrote for the users it holds: usually lets a heartbeat skip the read. */
  const known = new Map<string, KeyState>();
  const keyOf = (userId: string) => `u.${subjectToken(userId)}`;

  const read = async (userId: string): Promise<KeyState> => {
    const entry = await (await bound).get(keyOf(userId));
    if (entry === null) return { revision: 0, holders: new Map() };
    return { revision: entry.revision, holders: entry.operation === "PUT" ? decodeHolders(entry) : new Map() };
  };

  /**
   * Applies `change` to the live holders of the user's key with compare-and-set, retrying on
   * a concurrent write; returns how many live holders there were before and after.
   */
  const mutate = async (userId: string, change: (holders: Map<string, number>) => void) => {
    if (connection.isClosed()) throw new Error("the NATS connection is closed");
    const kv = await bound;
    const key = keyOf(userId);
    // The cached state saves a read only while this node is the sole holder; with other
    // holders it is likely stale (they heartbeat too), so read first.
    const cached = known.get(userId);
    let state = cached && cached.holders.size === 1 && cached.holders.has(nodeId) ? cached : null;
    for (let attempt = 1; ; attempt++) {
      state ??= await read(userId);
      const now = Date.now();
      const live = new Map([...state.holders].filter(([, expiresAt]) => expiresAt > now));
      const before = live.size;
      change(live);
      try {
        if (live.size > 0) {
          const revision = await kv.put(key, encodeHolders(live), { previousSeq: state.revision });
          known.set(userId, { revision, holders: live });
        } else {
          known.delete(userId);
          if (state.holders.size > 0) await kv.delete(key, { previousSeq: state.revision });
        }
        return { before, after: live.size };
      } catch (error) {
        known.delete(userId);
        if (!isWrongLastSequence(error) || attempt >= MAX_ATTEMPTS) throw error;
        state = null;
      }
    }
  };
  const hold = (holders: Map<string, number>) => void holders.set(nodeId, Date.now() + ttlMs);

  return {
    heartbeatMs: ttlMs / 3,
    join: async (userId) => (await mutate(userId, hold)).before === 0,
    refresh: async (userId) => (await mutate(userId, hold)).before === 0,
    async leave(userId) {
      try {
        return (await mutate(userId, (holders) => void holders.delete(nodeId))).after === 0;
      } finally {
        known.delete(userId);
      }
    },
    async online(userIds) {
      const now = Date.now();
      const states = await Promise.all(userIds.map(read));
      return new Set(userIds.filter((_, i) => [...states[i]!.holders.values()].some((expiresAt) => expiresAt > now)));
    },
  };
}

function encodeHolders(holders: Map<string, number>): string {
  return JSON.stringify(Object.fromEntries(holders));
}

/** A value this code did not write (or cannot parse) counts as no holders, to be overwritten. */
function decodeHolders(entry: KvEntry): Map<string, number> {
  try {
    const value: unknown = JSON.parse(entry.string());
    if (typeof value !== "object" || value === null) return new Map();
    return new Map(Object.entries(value).filter((pair): pair is [string, number] => typeof pair[1] === "number"));
  } catch {
    return new Map();
  }
}

function isWrongLastSequence(error: unknown): boolean {
  return (error as { api_error?: { err_code?: number } } | null)?.api_error?.err_code === WRONG_LAST_SEQUENCE;
}
