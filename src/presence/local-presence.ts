/**
 * The part of presence that is the same on every backend: counting this node's streams per
 * user, turning those counts into "this node holds the user / no longer does", announcing
 * the result, and answering lookups. Where holders are kept (a map in this process, or a
 * NATS KV bucket shared by all nodes) is the PresenceRegistry's business.
 *
 * Each user has one queue on this node, so joins, leaves and heartbeats of one user never
 * overlap and their announcements go out in order. Flapping collapses: a join or leave
 * looks at the stream count when it runs, not when it was asked for, so any number of
 * streams opening and closing while one operation is in flight costs at most one more.
 */
import type { Logger } from "pino";
import type { PresenceAnnouncer } from "./presence-announcer.ts";
import type { PresenceInfo, PresenceTracker } from "./presence-tracker.ts";

/** Where holders of users are kept. Called at most once at a time per user. */
export interface PresenceRegistry {
  /** Records this node as holding the user; true if no node held them (they came online). */
  join(userId: string): Promise<boolean>;
  /** Removes this node as a holder; true if no node holds them any more (they went offline). */
  leave(userId: string): Promise<boolean>;
  /** Which of the users some node holds. Users held by this node are never asked about. */
  online(userIds: readonly string[]): Promise<Set<string>>;
  /**
   * How often to call refresh for every held user, if the registry forgets holders that
   * stop refreshing (a TTL), so that a node that dies takes its users offline.
   */
  readonly heartbeatMs?: number;
  /** Keeps this node's hold on the user alive; true if no node held them (they came back). */
  refresh?(userId: string): Promise<boolean>;
}

export interface LocalPresenceOptions {
  registry: PresenceRegistry;
  announcer: PresenceAnnouncer;
  logger: Pick<Logger, "warn">;
  /** How long close() waits for the registry before giving up on it (last-seen is recorded first). */
  closeTimeoutMs: number;
}

interface LocalUser {
  streams: number;
  /** Whether this node has joined (or tried to join) the registry for the user. */
  registered: boolean;
  reconcileQueued: boolean;
  /** The end of the user's queue; never rejects. */
  tail: Promise<void>;
}

export function createLocalPresence({ registry, announcer, logger, closeTimeoutMs }: LocalPresenceOptions): PresenceTracker {
  const users = new Map<string, LocalUser>();
  let closing = false;
  let closedAt = new Date(0);
  let closed: Promise<void> | null = null;

  const enqueue = (userId: string, user: LocalUser, operation: () => Promise<void>): Promise<void> => {
    const run = user.tail.then(operation);
    const tail = run.catch(() => {});
    user.tail = tail;
    void tail.then(() => {
      if (user.tail === tail && user.streams === 0 && !user.registered && users.get(userId) === user) users.delete(userId);
    });
    return run;
  };

  const join = async (userId: string, user: LocalUser) => {
    // Registered before the attempt: if it fails, the next heartbeat retries it.
    user.registered = true;
    const joined = await registry.join(userId);
    if (joined) await announcer.announce(userId, true, null);
  };

  const leave = async (userId: string, user: LocalUser) => {
    const at = closing ? closedAt : new Date();
    // Seen now whatever the registry says, and recorded BEFORE the registry lets go, so no
    // lookup can find the user offline without a last-seen time (close() records everyone
    // at once beforehand).
    if (!closing) await announcer.recordLastSeen([userId], at);
    user.registered = false;
    const wentOffline = await registry.leave(userId);
    if (wentOffline) await announcer.announce(userId, false, at);
  };

  /** Brings the registry in line with the stream count; rejects if that failed. */
  const reconcile = (userId: string, user: LocalUser): Promise<void> => {
    if (user.reconcileQueued) return user.tail;
    user.reconcileQueued = true;
    return enqueue(userId, user, async () => {
      user.reconcileQueued = false;
      const wanted = user.streams > 0 && !closing;
      if (wanted && !user.registered) await join(userId, user);
      else if (!wanted && user.registered) await leave(userId, user);
    });
  };
  const reconcileLogged = (userId: string, user: LocalUser) =>
    void reconcile(userId, user).catch((error: unknown) => logger.warn({ err: error, userId }, "presence change failed"));

  let heartbeatRunning = false;
  const heartbeat = async (refresh: (userId: string) => Promise<boolean>) => {
    if (heartbeatRunning || closing) return;
    heartbeatRunning = true;
    try {
      const runs = [...users].filter(([, user]) => user.registered).map(([userId, user]) =>
        enqueue(userId, user, async () => {
          if (!user.registered || closing) return;
          if (await refresh(userId)) await announcer.announce(userId, true, null);
        }),
      );
      const failed = (await Promise.allSettled(runs)).filter((r) => r.status === "rejected");
      if (failed.length > 0) {
        logger.warn({ err: (failed[0] as PromiseRejectedResult).reason, failed: failed.length, users: runs.length }, "presence heartbeat failed");
      }
    } finally {
      heartbeatRunning = false;
    }
  };
  const refresh = registry.refresh?.bind(registry);
  const timer = refresh && registry.heartbeatMs ? setInterval(() => void heartbeat(refresh), registry.heartbeatMs) : null;
  timer?.unref();

  return {
    streamOpened(userId) {
      if (closing) return;
      let user = users.get(userId);
      if (user === undefined) {
        user = { streams: 0, registered: false, reconcileQueued: false, tail: Promise.resolve() };
        users.set(userId, user);
      }
      user.streams++;
      if (user.streams === 1) reconcileLogged(userId, user);
    },

    streamClosed(userId) {
      const user = users.get(userId);
      if (user === undefined || user.streams === 0) return;
      user.streams--;
      if (user.streams === 0) reconcileLogged(userId, user);
    },

    async lookup(userIds) {
      const ids = [...new Set(userIds)];
      // Held here: a stream is open, or the last one closed and its leave is still under way.
      const held = (id: string) => {
        const user = users.get(id);
        return user !== undefined && (user.streams > 0 || user.registered);
      };
      // Registry first, then last-seen: a user the registry already let go has had their
      // last-seen time recorded before that (see leave), so this order never reads "offline"
      // without it.
      const elsewhere = await registry.online(ids.filter((id) => !held(id)));
      const lastSeen = await announcer.lastSeen(ids);
      const result = new Map<string, PresenceInfo>();
      for (const id of ids) {
        if (!lastSeen.has(id)) continue;
        const online = held(id) || elsewhere.has(id);
        result.set(id, { online, lastSeenAt: online ? null : (lastSeen.get(id) ?? null) });
      }
      return result;
    },

    close() {
      closed ??= (async () => {
        closing = true;
        closedAt = new Date();
        if (timer) clearInterval(timer);
        const held = [...users].filter(([, user]) => user.streams > 0 || user.registered);
        for (const [, user] of held) user.streams = 0;
        try {
          await announcer.recordLastSeen(
            held.map(([userId]) => userId),
            closedAt,
          );
        } catch (error) {
          logger.warn({ err: error, users: held.length }, "recording last-seen on close failed");
        }
        let timeout: NodeJS.Timeout | undefined;
        const gaveUp = new Promise<"timeout">((resolve) => (timeout = setTimeout(() => resolve("timeout"), closeTimeoutMs)));
        const left = Promise.allSettled(held.map(([userId, user]) => reconcile(userId, user)));
        const outcome = await Promise.race([left, gaveUp]);
        clearTimeout(timeout);
        if (outcome === "timeout") {
          logger.warn({ users: held.length, timeoutMs: closeTimeoutMs }, "presence close timed out; this node's holds expire with the TTL");
        } else {
          const failed = outcome.filter((r) => r.status === "rejected");
          if (failed.length > 0) {
            logger.warn({ err: (failed[0] as PromiseRejectedResult).reason, failed: failed.length, users: held.length }, "presence close could not release every hold; they expire with the TTL");
          }
        }
      })();
      return closed;
    },
  };
}
