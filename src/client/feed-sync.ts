/**
 * Keeps the Subscribe stream open: resumes from the stored cursor, saves the cursor after each
 * event is handled (so a crash replays at most the event being handled), reloads state when the
 * server answers resync_required, and reconnects with backoff when the stream breaks.
 */
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { SubscribeResponse } from "../../gen/parley/v1/event_service_pb.ts";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.ts";

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
  backoff?: BackoffOptions;
}

export class FeedSync {
  readonly #o: FeedSyncOptions;

  constructor(options: FeedSyncOptions) {
    this.#o = options;
  }

  /** Runs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      let live = false;
      try {
        await this.#o.beforeConnect();
        const stream = this.#o.subscribe(await this.#o.cursor(), signal);
        for await (const res of stream) {
          if (!live) {
            live = true;
            attempt = 0;
            this.#o.onLive(true);
          }
          await this.#handle(res.frame);
        }
        // The server ended the stream (resync_required, ending, or a quiet close): resubscribe.
      } catch (err) {
        if (signal.aborted) break;
        void err; // the backoff below is the whole answer to a broken stream
      }
      if (live) this.#o.onLive(false);
      if (signal.aborted) break;
      // Reconnect at once after a stream that worked; back off after one that never came up.
      if (!live) await sleep(backoffDelay(attempt++, this.#o.backoff), signal);
    }
  }

  async #handle(frame: SubscribeResponse["frame"]): Promise<void> {
    switch (frame.case) {
      case "event":
        await this.#o.handleEvent(frame.value);
        if (frame.value.cursor) await this.#o.saveCursor(frame.value.cursor);
        return;
      case "caughtUp":
      case "heartbeat":
      case "ending":
        await this.#o.saveCursor(frame.value.cursor);
        return;
      case "resyncRequired":
        await this.#o.resync(frame.value.reason);
        await this.#o.saveCursor(frame.value.cursor);
        return;
      default:
        return;
    }
  }
}
