/**
 * One Subscribe stream's live side: which conversations it follows, and a bounded queue of
 * what the hub offered it. Membership changes are applied when the hub dispatches them (in
 * log order), so the stream starts and stops receiving a conversation exactly at the event
 * that adds or removes its user.
 */
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { ModerationAction } from "../../gen/parley/v1/moderation_pb.ts";
import type { StoredEvent } from "../log/event-log.ts";
import type { LogPosition } from "../log/log-position.ts";
import { isVisibleTo, membershipChange } from "./membership-filter.ts";

/** How many recent ephemeral event ids a stream remembers to drop repeats. */
const RECENT_EPHEMERAL = 32;

/**
 * A live event and the log position the hub had reached when it dispatched it. The stream's
 * queue keeps dispatch order, so once the event is delivered, everything the stream was
 * offered up to `at` has been delivered too.
 */
export type LiveItem = { stored: StoredEvent; at: LogPosition } | { ephemeral: Event };

/** What the stream should do next. */
export type Wakeup = { item: LiveItem } | { overflowed: true } | { draining: true } | { restricted: true } | { sessionEnded: true } | { idle: true };

export interface MembershipIndex {
  follow(subscription: FeedSubscription, conversationId: string): void;
  unfollow(subscription: FeedSubscription, conversationId: string): void;
}

export class FeedSubscription {
  readonly userId: string;
  /** The stream's session id (ConnectionService ends a session by it). */
  readonly sessionId: string;
  readonly conversations: Set<string>;
  readonly #index: MembershipIndex;
  readonly #limit: number;
  #queue: LiveItem[] = [];
  #overflowed = false;
  #draining = false;
  #restricted = false;
  #sessionEnded = false;
  #wake: (() => void) | null = null;
  readonly #recentEphemeral: string[] = [];

  constructor(userId: string, sessionId: string, conversations: Iterable<string>, index: MembershipIndex, limit: number) {
    this.userId = userId;
    this.sessionId = sessionId;
    this.conversations = new Set(conversations);
    this.#index = index;
    this.#limit = limit;
  }

  /** Called by the hub, in log order, for every event routed to this stream. */
  offer(stored: StoredEvent, at: LogPosition): void {
    if (!isVisibleTo(stored, this.userId, this.conversations)) return;
    // A row the retention sweeper scrubbed (read back by a hole fill) delivers nothing.
    if (stored.event.kind.case === undefined) return;
    const change = membershipChange(stored, this.userId);
    if (change && "follow" in change) this.#index.follow(this, change.follow);
    if (change && "unfollow" in change) this.#index.unfollow(this, change.unfollow);
    this.#push({ stored, at });
    if (endsStreams(stored, this.userId)) this.#restricted = true;
    if (endsSession(stored, this.userId, this.sessionId)) this.#sessionEnded = true;
  }

  /**
   * Typing and presence: dropped rather than queued when the stream is behind. A presence
   * change is published once per conversation of its user, so a partner who shares several
   * conversations sees the same event more than once; repeats are dropped by id.
   */
  offerEphemeral(event: Event): void {
    if (event.actorId === this.userId || this.#queue.length >= this.#limit || this.#recentEphemeral.includes(event.id)) return;
    this.#recentEphemeral.push(event.id);
    if (this.#recentEphemeral.length > RECENT_EPHEMERAL) this.#recentEphemeral.shift();
    this.#push({ ephemeral: event });
  }

  /** True when live events were dropped since the last reset (the stream must catch up from the log). */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** Forgets queued events after a catch-up from the log has covered them. */
  resetAfterCatchUp(): void {
    this.#queue = [];
    this.#overflowed = false;
  }

  get idle(): boolean {
    return this.#queue.length === 0 && !this.#overflowed;
  }

  /** Asks the stream to end with a resumable frame (server shutdown). */
  drain(): void {
    this.#draining = true;
    this.#notify();
  }

  /** Waits for the next thing to do, up to timeoutMs (then idle, for a heartbeat). */
  async next(timeoutMs: number, signal: AbortSignal): Promise<Wakeup> {
    for (;;) {
      if (this.#draining) return { draining: true };
      // An ended session must not be told to resume, as a slow reader is.
      if (this.#overflowed) return this.#sessionEnded ? { sessionEnded: true } : { overflowed: true };
      const item = this.#queue.shift();
      if (item) return { item };
      // After the events before it, the suspension's own included, have been delivered.
      if (this.#restricted) return { restricted: true };
      if (this.#sessionEnded) return { sessionEnded: true };
      if (signal.aborted) return { draining: true };
      const woken = await new Promise<boolean>((resolve) => {
        const settle = (value: boolean) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve(value);
        };
        const timer = setTimeout(() => settle(false), timeoutMs);
        const onAbort = () => settle(true);
        signal.addEventListener("abort", onAbort, { once: true });
        this.#wake = () => settle(true);
      });
      this.#wake = null;
      if (!woken) return { idle: true };
    }
  }

  #push(item: LiveItem): void {
    if (this.#overflowed) return;
    if ("stored" in item && this.#queue.length >= this.#limit) {
      // Too far behind: drop the live queue; the stream resumes from the log (or ends).
      this.#queue = [];
      this.#overflowed = true;
    } else {
      this.#queue.push(item);
    }
    this.#notify();
  }

  #notify(): void {
    this.#wake?.();
  }
}

/** A suspension or ban of the stream's user: the stream ends once it has delivered it. */
function endsStreams(stored: StoredEvent, userId: string): boolean {
  if (stored.conversationId !== null || stored.targetUserId !== userId) return false;
  const { kind } = stored.event;
  return kind.case === "accountModerated" && (kind.value.action === ModerationAction.SUSPEND || kind.value.action === ModerationAction.BAN);
}

/** The user (or an operator) ended this very stream: it ends once it has delivered the event. */
function endsSession(stored: StoredEvent, userId: string, sessionId: string): boolean {
  if (stored.conversationId !== null || stored.targetUserId !== userId) return false;
  const { kind } = stored.event;
  return kind.case === "sessionEnded" && kind.value.sessionId === sessionId;
}
