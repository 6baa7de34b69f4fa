/**
 * Each node's live fan-out. It receives every committed event (from any node, through the
 * bus), puts them back in log order, and hands each to the local streams that follow its
 * conversation or its target user.
 *
 * Positions are gapless, so a missing position is a lost or late publish, never a rollback.
 * A hole that stays open for holeTimeoutMs (or a head that moves without events arriving)
 * is filled from PostgreSQL, and the filled events are given to onFilled (the relay
 * republishes them). Hence no node depends on any publish arriving.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { Database } from "../db/schema.ts";
import type { EphemeralRoute, EventBus } from "./event-bus.ts";
import { readHead, readRange, type StoredEvent } from "./event-log.ts";
import { FeedSubscription, type MembershipIndex } from "./feed-subscription.ts";

export interface FeedHubOptions {
  db: Kysely<Database>;
  bus: EventBus;
  logger: Logger;
  /** Live events a stream may have queued before it counts as too slow. */
  bufferEvents: number;
  /** How long a hole in positions may stay open before it is read from the database. */
  holeTimeoutMs?: number;
  /** How often the log head is polled, to notice events whose publish never came. */
  headPollMs?: number;
  /** Events that had to be read from the database (their publish was lost). */
  onFilled?: (events: StoredEvent[]) => void;
}

/** Most events read from the database in one hole fill. */
const FILL_BATCH = 1000;

export class FeedHub implements MembershipIndex {
  readonly #options: FeedHubOptions;
  #next = 1n;
  readonly #pending = new Map<bigint, StoredEvent>();
  readonly #byConversation = new Map<string, Set<FeedSubscription>>();
  readonly #byUser = new Map<string, Set<FeedSubscription>>();
  #holeTimer: NodeJS.Timeout | null = null;
  #pollTimer: NodeJS.Timeout | null = null;
  #filling: Promise<void> | null = null;
  #lastProgress = Date.now();
  #unsubscribe: (() => void)[] = [];

  constructor(options: FeedHubOptions) {
    this.#options = options;
  }

  /** Every event up to this position has been dispatched. */
  get position(): bigint {
    return this.#next - 1n;
  }

  async start(): Promise<void> {
    this.#next = (await readHead(this.#options.db)) + 1n;
    this.#unsubscribe.push(
      this.#options.bus.onEvent((event) => this.#receive(event)),
      this.#options.bus.onEphemeral((route, event) => this.#dispatchEphemeral(route, event)),
    );
    const pollMs = this.#options.headPollMs ?? 1000;
    this.#pollTimer = setInterval(() => void this.#pollHead(), pollMs);
    this.#pollTimer.unref();
  }

  async stop(): Promise<void> {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    if (this.#holeTimer) clearTimeout(this.#holeTimer);
    await this.#filling;
  }

  /** Registers a stream; it receives every event dispatched from now on that concerns it. */
  open(userId: string, conversationIds: Iterable<string>): FeedSubscription {
    const subscription = new FeedSubscription(userId, conversationIds, this, this.#options.bufferEvents);
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
    if (event.position < this.#next) return; // already dispatched (a republish or a fill)
    this.#pending.set(event.position, event);
    this.#drainInOrder();
    if (this.#pending.size > 0 && !this.#holeTimer) {
      this.#holeTimer = setTimeout(() => {
        this.#holeTimer = null;
        void this.#fill();
      }, this.#options.holeTimeoutMs ?? 250);
      this.#holeTimer.unref();
    }
  }

  #drainInOrder(): void {
    for (let event = this.#pending.get(this.#next); event; event = this.#pending.get(this.#next)) {
      this.#pending.delete(this.#next);
      this.#next++;
      this.#lastProgress = Date.now();
      this.#dispatch(event);
    }
  }

  #dispatch(event: StoredEvent): void {
    const targets = new Set<FeedSubscription>();
    if (event.conversationId !== null) this.#byConversation.get(event.conversationId)?.forEach((s) => targets.add(s));
    if (event.targetUserId !== null) this.#byUser.get(event.targetUserId)?.forEach((s) => targets.add(s));
    try {
      for (const subscription of targets) subscription.offer(event);
    } catch (error) {
      // The payload is decoded here, on first use; one that is not an event must not stop the
      // hub (its position is already passed, as any event's that concerns no stream).
      this.#options.logger.warn({ err: error, position: String(event.position) }, "feed hub dropped an event it could not decode");
    }
  }

  #dispatchEphemeral(route: EphemeralRoute, event: Event): void {
    const targets = "conversationId" in route ? this.#byConversation.get(route.conversationId) : this.#byUser.get(route.userId);
    targets?.forEach((subscription) => subscription.offerEphemeral(event));
  }

  async #pollHead(): Promise<void> {
    if (Date.now() - this.#lastProgress < (this.#options.headPollMs ?? 1000)) return;
    try {
      const head = await readHead(this.#options.db);
      if (head >= this.#next) await this.#fill(head);
    } catch (error) {
      this.#options.logger.warn({ err: error }, "feed hub could not read the log head");
    }
  }

  /** Reads missing events from the database, up to the highest pending one (or `upTo`). */
  async #fill(upTo?: bigint): Promise<void> {
    if (this.#filling) return this.#filling;
    this.#filling = (async () => {
      try {
        const highestPending = [...this.#pending.keys()].reduce((a, b) => (a > b ? a : b), 0n);
        const target = upTo ?? highestPending - 1n;
        while (this.#next <= target) {
          const from = this.#next;
          const to = from + BigInt(FILL_BATCH) - 1n < target ? from + BigInt(FILL_BATCH) - 1n : target;
          const events = await readRange(this.#options.db, from, to);
          const missing = events.filter((e) => !this.#pending.has(e.position) && e.position >= this.#next);
          if (events.length === 0 || events[0]!.position !== from) {
            // Pruned from the log (beyond the replay window): nothing can deliver it any more.
            this.#options.logger.warn({ from: String(from) }, "feed hub skipped events that are no longer in the log");
            this.#next = events[0]?.position ?? to + 1n;
          }
          for (const event of events) this.#receive(event);
          if (missing.length > 0) this.#options.onFilled?.(missing);
        }
      } catch (error) {
        this.#options.logger.warn({ err: error }, "feed hub could not fill a hole from the database; retrying");
        this.#holeTimer ??= setTimeout(() => {
          this.#holeTimer = null;
          void this.#fill();
        }, 1000);
      }
      // Cleared in a callback, never in the body: a fill with nothing to read finishes before
      // the assignment below, and clearing it there left #filling set for good (no fill ever ran
      // again, so a lost publish stalled every stream of the node).
    })().finally(() => (this.#filling = null));
    return this.#filling;
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
