/**
 * Keeps the Subscribe stream open: resumes from the stored cursor, saves the cursor after each
 * event is handled (so a crash replays at most the event being handled), reloads state when the
 * server answers resync_required, and reconnects with backoff when the stream breaks.
 *
 * An event whose handling fails is tried again (the stream reconnects, with backoff, from the
 * cursor before it) and, after a few failures, reported and passed over: one event the client
 * cannot handle must not hold back every event after it. What it would have done is not lost:
 * messages come back through the ordering buffer's gap fill, key material stays in the inbox.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { AccountRestriction } from "../../gen/parley/v1/moderation_pb.ts";
import { EndReason, type SubscribeResponse } from "../../gen/parley/v1/event_service_pb.ts";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.ts";
import { accountRestrictionOf } from "./rpc-errors.ts";

/** Opens one Subscribe call from the cursor ("" = now). */
export type Subscribe = (cursor: string, signal: AbortSignal) => AsyncIterable<SubscribeResponse>;

export interface FeedSyncOptions {
  subscribe: Subscribe;
  cursor(): Promise<string>;
  saveCursor(cursor: string): Promise<void>;
  /** Runs before each (re)connect: the codec drains its to-device inbox here. */
  beforeConnect(): Promise<void>;
  /** Handles one event; the cursor is saved only after it returns. */
  handleEvent(event: Event): Promise<void>;
  /** Reloads state after resync_required; the fresh cursor is saved after it returns. */
  resync(reason: string): Promise<void>;
  /** The stream is up (true: first frame received) or down (false). */
  onLive(live: boolean): void;
  /** An event whose handling failed MAX_EVENT_ATTEMPTS times, passed over. */
  onSkipped(event: Event, error: unknown): void;
  /** The account is suspended or banned: the feed waits (see RESTRICTED_RECHECK_MS) instead of retrying. */
  onRestricted(restriction: AccountRestriction): void;
  /**
   * The user (from another session) or an operator ended this session: the feed stays down
   * until the session is closed and started again (the user signs in again).
   */
  onSessionEnded(byOperator: boolean): void;
  backoff?: BackoffOptions;
}

/**
 * Longest wait before trying again while the account is restricted: a suspension is waited out
 * to its end, but an operator may lift it (or a ban) early.
 */
const RESTRICTED_RECHECK_MS = 60_000;

/** How many times one event is tried before it is passed over. */
const MAX_EVENT_ATTEMPTS = 3;

/** Handling an event failed: the stream is dropped and resumed from before it. */
class EventHandlingFailed extends Error {}

export class FeedSync {
  readonly #o: FeedSyncOptions;
  /** The event that failed last, and how often in a row. */
  #failing: { cursor: string; count: number } | undefined;
  /** The current stream's session id (from caught_up), and whether an operator ended it. */
  #session: { id: string; endedByOperator: boolean } | undefined;

  constructor(options: FeedSyncOptions) {
    this.#o = options;
  }

  /** Runs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      let live = false;
      let handlingFailed = false;
      try {
        await this.#o.beforeConnect();
        const stream = this.#o.subscribe(await this.#o.cursor(), signal);
        for await (const res of stream) {
          if (!live) {
            live = true;
            attempt = 0;
            this.#o.onLive(true);
          }
          if ((await this.#handle(res.frame)) === "session_ended") {
            this.#o.onLive(false);
            this.#o.onSessionEnded(this.#session?.endedByOperator ?? false);
            // Not resubscribing is the point; the owner's close() (the signal) ends the wait.
            await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
            return;
          }
        }
        // The server ended the stream (resync_required, ending, or a quiet close): resubscribe.
      } catch (err) {
        if (signal.aborted) break;
        const restriction = accountRestrictionOf(err);
        if (restriction) {
          // Suspended or banned: retrying sooner cannot help, so wait for the end (or a while).
          this.#o.onRestricted(restriction);
          const untilMs = restriction.until ? timestampMs(restriction.until) - Date.now() : Infinity;
          await sleep(Math.max(0, Math.min(untilMs, RESTRICTED_RECHECK_MS)), signal);
          continue;
        }
        handlingFailed = err instanceof EventHandlingFailed; // else: the backoff below is the whole answer to a broken stream
      }
      if (live) this.#o.onLive(false);
      if (signal.aborted) break;
      // Reconnect at once after a stream that worked; back off after one that never came up,
      // and before trying a failed event again.
      if (!live || handlingFailed) await sleep(backoffDelay(handlingFailed ? (this.#failing?.count ?? 1) - 1 : attempt++, this.#o.backoff), signal);
    }
  }

  async #handle(frame: SubscribeResponse["frame"]): Promise<"session_ended" | void> {
    switch (frame.case) {
      case "event": {
        const { kind } = frame.value;
        if (kind.case === "sessionEnded" && this.#session?.id === kind.value.sessionId) this.#session.endedByOperator = kind.value.byOperator;
        await this.#handleEvent(frame.value);
        if (frame.value.cursor) await this.#o.saveCursor(frame.value.cursor);
        return;
      }
      case "caughtUp":
        this.#session = { id: frame.value.sessionId, endedByOperator: false };
        await this.#o.saveCursor(frame.value.cursor);
        return;
      case "heartbeat":
        await this.#o.saveCursor(frame.value.cursor);
        return;
      case "ending":
        await this.#o.saveCursor(frame.value.cursor);
        return frame.value.reason === EndReason.SESSION_ENDED ? "session_ended" : undefined;
      case "resyncRequired":
        await this.#o.resync(frame.value.reason);
        await this.#o.saveCursor(frame.value.cursor);
        return;
      default:
        return;
    }
  }

  /** Handles the event, or throws to retry it, or reports it once it failed too often. */
  async #handleEvent(event: Event): Promise<void> {
    try {
      await this.#o.handleEvent(event);
      this.#failing = undefined;
    } catch (error) {
      const count = this.#failing?.cursor === event.cursor ? this.#failing.count + 1 : 1;
      if (count < MAX_EVENT_ATTEMPTS) {
        this.#failing = { cursor: event.cursor, count };
        throw new EventHandlingFailed("handling a feed event failed", { cause: error });
      }
      this.#failing = undefined;
      this.#o.onSkipped(event, error);
    }
  }
}
