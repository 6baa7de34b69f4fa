/**
 * What the session tells the app, and the fan-out that does it: listeners (callbacks) and any
 * number of async iterators, each with its own queue so a slow reader never drops an item.
 */
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { AccountRestriction } from "../../gen/parley/v1/moderation_pb.ts";
import type { DecodedMessage } from "./message-decoder.ts";

export type ClientEvent =
  /** A new message, in seq order per conversation, each seq once. */
  | { type: "message"; message: DecodedMessage }
  /** A message was edited (its new version, decoded). */
  | { type: "edited"; message: DecodedMessage }
  /** A message was deleted. */
  | { type: "deleted"; conversationId: string; seq: bigint }
  /** A conversation's metadata changed (or it appeared). */
  | { type: "conversation"; conversation: Conversation }
  /** The feed could not be resumed: state was reloaded; reload what you show from history(). */
  | { type: "resync"; reason: string }
  /** The connection state changed: live once the feed is up, offline while it reconnects. */
  | { type: "connection"; live: boolean }
  /** A queued send was stored by the server. */
  | { type: "sent"; localId: string; message: Message }
  /** A queued send was refused for good; it stays in the outbox until discarded or retried. */
  | { type: "send_failed"; localId: string; conversationId: string; reason: string }
  /** Any other feed event (reactions, read positions, typing, …), as the server sent it. */
  | { type: "event"; event: Event }
  /** A feed event the session failed to handle, again and again, and passed over. */
  | { type: "event_skipped"; event: Event; reason: string }
  /**
   * An operator suspended (until `restriction.until`) or banned the account. Sends fail with
   * PERMISSION_DENIED meanwhile; the feed reconnects by itself once it ends or is lifted.
   */
  | { type: "restricted"; restriction: AccountRestriction }
  /**
   * This session was ended (ConnectionService.EndSession) by the user from another session, or
   * by an operator: the feed stays down and sends wait. Sign the user in again (close() and a
   * new start()) to reconnect.
   */
  | { type: "session_ended"; byOperator: boolean };

export type ClientEventListener = (event: ClientEvent) => void;

export class ClientEventHub {
  readonly #listeners = new Set<ClientEventListener>();

  emit(event: ClientEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch {
        // A listener's bug must not stop the feed; the app sees its own exceptions in its tests.
      }
    }
  }

  /** Calls the listener for every event from now on; returns the unsubscribe function. */
  on(listener: ClientEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Every event from now on, until the iteration is ended (break/return) or the signal aborts. */
  iterate(signal?: AbortSignal): AsyncIterableIterator<ClientEvent> {
    const queue: ClientEvent[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    const off = this.on((e) => {
      queue.push(e);
      wake?.();
    });
    const finish = () => {
      done = true;
      off();
      wake?.();
    };
    signal?.addEventListener("abort", finish, { once: true });
    const it: AsyncIterableIterator<ClientEvent> = {
      async next() {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const value = queue.shift();
        return value ? { value, done: false } : { value: undefined, done: true };
      },
      async return() {
        finish();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }
}
