/**
 * Each node's live fan-out. It receives every committed event (from any node, through the
 * bus), puts each partition's events back in position order, and hands each to the local
 * streams that follow its conversation or its target user.
 *
 * Positions are gapless per partition, so a missing position is a lost or late publish, never
 * a rollback. A hole that stays open for holeTimeoutMs (or a head that moves without events
 * arriving) is filled from PostgreSQL, and the filled events are given to onFilled (the relay
 * republishes them). A hole holds back only its own partition. Hence no node depends on any
 * publish arriving.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import type { EphemeralRoute, EventBus } from "../log/event-bus.ts";
import { readHeads, readRange, type StoredEvent } from "../log/event-log.ts";
import type { LogPosition } from "../log/log-position.ts";
import { FeedSubscription, type MembershipIndex } from "./feed-subscription.ts";

export interface FeedHubOptions {
  db: Kysely<Database>;
  bus: EventBus;
  logger: Logger;
  /** Live events a stream may have queued before it counts as too slow. */
  bufferEvents: number;
  /** How long a hole in positions may stay open before it is read from the database. */
  holeTimeoutMs?: number;
  /** How often the log heads are polled, to notice events whose publish never came. */
  headPollMs?: number;
  /** Events that had to be read from the database (their publish was lost). */
  onFilled?: (events: StoredEvent[]) => void;
  /**
   * Sees every event that no conversation carries (a user's own events), in log order, as it
   * is dispatched: how node-local state that follows the log (suspensions) stays current.
   */
  onUserEvent?: (event: StoredEvent) => void;
}

/** Most events read from the database in one hole fill. */
const FILL_BATCH = 1000;

/** One partition's place in the log on this node. */
class PartitionState {
  /** The next position to dispatch. */
  next = 1n;
  readonly pending = new Map<bigint, StoredEvent>();
  holeTimer: NodeJS.Timeout | null = null;
  filling: Promise<void> | null = null;
  lastProgress = Date.now();
}

export class FeedHub implements MembershipIndex {
  readonly #options: FeedHubOptions;
  #partitions: PartitionState[] = [];
  /** Everything up to here has been dispatched; a new array each time it moves. */
  #position: LogPosition = [];
  readonly #byConversation = new Map<string, Set<FeedSubscription>>();
  readonly #byUser = new Map<string, Set<FeedSubscription>>();
  #pollTimer: NodeJS.Timeout | null = null;
  #unsubscribe: (() => void)[] = [];

  constructor(options: FeedHubOptions) {
    this.#options = options;
  }

  /** Every event up to this position has been dispatched (never mutated: safe to keep). */
  get position(): LogPosition {
    return this.#position;
  }

  async start(): Promise<void> {
    const heads = await readHeads(this.#options.db);
    this.#partitions = heads.map((head) => Object.assign(new PartitionState(), { next: head + 1n }));
    this.#position = heads;
    this.#unsubscribe.push(
      this.#options.bus.onEvent((event) => this.#receive(event)),
      this.#options.bus.onEphemeral((route, event) => this.#dispatchEphemeral(route, event)),
    );
    const pollMs = this.#options.headPollMs ?? 1000;
    this.#pollTimer = setInterval(() => void this.#pollHeads(), pollMs);
    this.#pollTimer.unref();
  }

  async stop(): Promise<void> {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    for (const state of this.#partitions) if (state.holeTimer) clearTimeout(state.holeTimer);
    await Promise.all(this.#partitions.map((state) => state.filling));
  }

  /** Registers a stream; it receives every event dispatched from now on that concerns it. */
  open(userId: string, sessionId: string, conversationIds: Iterable<string>): FeedSubscription {
    const subscription = new FeedSubscription(userId, sessionId, conversationIds, this, this.#options.bufferEvents);
    addTo(this.#byUser, userId, subscription);
    for (const conversationId of subscription.conversations) addTo(this.#byConversation, conversationId, subscription);
    return subscription;
  }

  close(subscription: FeedSubscription): void {
    removeFrom(this.#byUser, subscription.userId, subscription);
    for (const conversationId of subscription.conversations) removeFrom(this.#byConversation, conversationId, subscription);
  }

  /** Ends every local stream with a resumable frame. */
  drainAll(): void {
    for (const subscriptions of this.#byUser.values()) for (const subscription of subscriptions) subscription.drain();
  }

  get openStreams(): number {
    let n = 0;
    for (const subscriptions of this.#byUser.values()) n += subscriptions.size;
    return n;
  }

  follow(subscription: FeedSubscription, conversationId: string): void {
    subscription.conversations.add(conversationId);
    addTo(this.#byConversation, conversationId, subscription);
  }

  unfollow(subscription: FeedSubscription, conversationId: string): void {
    subscription.conversations.delete(conversationId);
    removeFrom(this.#byConversation, conversationId, subscription);
  }

  #receive(event: StoredEvent): void {
    const state = this.#partitions[event.partition];
    if (!state) {
      this.#options.logger.warn({ partition: event.partition }, "feed hub received an event of a partition this log does not have");
      return;
    }
    if (event.position < state.next) return; // already dispatched (a republish or a fill)
    state.pending.set(event.position, event);
    this.#drainInOrder(event.partition, state);
    if (state.pending.size > 0 && !state.holeTimer) {
      state.holeTimer = setTimeout(() => {
        state.holeTimer = null;
        void this.#fill(event.partition);
      }, this.#options.holeTimeoutMs ?? 250);
      state.holeTimer.unref();
    }
  }

  #drainInOrder(partition: number, state: PartitionState): void {
    for (let event = state.pending.get(state.next); event; event = state.pending.get(state.next)) {
      state.pending.delete(state.next);
      state.next++;
      state.lastProgress = Date.now();
      const position = [...this.#position];
      position[partition] = event.position;
      this.#position = position;
      this.#dispatch(event, position);
    }
  }

  /** Offers the event to the streams it concerns, with the log position it brings them to. */
  #dispatch(event: StoredEvent, at: LogPosition): void {
    const targets = new Set<FeedSubscription>();
    if (event.conversationId !== null) this.#byConversation.get(event.conversationId)?.forEach((s) => targets.add(s));
    if (event.targetUserId !== null) this.#byUser.get(event.targetUserId)?.forEach((s) => targets.add(s));
    try {
      if (event.conversationId === null) this.#options.onUserEvent?.(event);
      for (const subscription of targets) subscription.offer(event, at);
    } catch (error) {
      // The payload is decoded here, on first use; one that is not an event must not stop the
      // hub (its position is already passed, as any event's that concerns no stream).
      this.#options.logger.warn({ err: error, partition: event.partition, position: String(event.position) }, "feed hub dropped an event it could not decode");
    }
  }

  #dispatchEphemeral(route: EphemeralRoute, event: Event): void {
    const targets = "conversationId" in route ? this.#byConversation.get(route.conversationId) : this.#byUser.get(route.userId);
    targets?.forEach((subscription) => subscription.offerEphemeral(event));
  }

  async #pollHeads(): Promise<void> {
    const pollMs = this.#options.headPollMs ?? 1000;
    const now = Date.now();
    if (this.#partitions.every((state) => now - state.lastProgress < pollMs)) return;
    try {
      const heads = await readHeads(this.#options.db);
      for (const [partition, head] of heads.entries()) {
        const state = this.#partitions[partition];
        if (state && head >= state.next && Date.now() - state.lastProgress >= pollMs) await this.#fill(partition, head);
      }
    } catch (error) {
      this.#options.logger.warn({ err: error }, "feed hub could not read the log heads");
    }
  }

  /** Reads a partition's missing events from the database, up to its highest pending one (or `upTo`). */
  async #fill(partition: number, upTo?: bigint): Promise<void> {
    const state = this.#partitions[partition]!;
    if (state.filling) return state.filling;
    const filling = (async () => {
      try {
        const highestPending = [...state.pending.keys()].reduce((a, b) => (a > b ? a : b), 0n);
        const target = upTo ?? highestPending - 1n;
        while (state.next <= target) {
          const from = state.next;
          const to = from + BigInt(FILL_BATCH) - 1n < target ? from + BigInt(FILL_BATCH) - 1n : target;
          const events = await readRange(this.#options.db, partition, from, to);
          const missing = events.filter((e) => !state.pending.has(e.position) && e.position >= state.next);
          if (events.length === 0 || events[0]!.position !== from) {
            // Pruned from the log (beyond the replay window): nothing can deliver it any more.
            this.#options.logger.warn({ partition, from: String(from) }, "feed hub skipped events that are no longer in the log");
            state.next = events[0]?.position ?? to + 1n;
          }
          for (const event of events) this.#receive(event);
          if (missing.length > 0) this.#options.onFilled?.(missing);
        }
      } catch (error) {
        this.#options.logger.warn({ err: error, partition }, "feed hub could not fill a hole from the database; retrying");
        state.holeTimer ??= setTimeout(() => {
          state.holeTimer = null;
          void this.#fill(partition);
        }, 1000);
      }
    })();
    // Cleared when it settles, not in the body: a fill with nothing to read settles before the
    // assignment below, and a flag cleared first would then stay set, stopping every later fill.
    state.filling = filling.finally(() => {
      state.filling = null;
    });
    return state.filling;
  }
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}
