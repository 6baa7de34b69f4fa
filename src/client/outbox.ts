/**
 * The offline outbox's sender: one loop that sends the queued entries strictly in local order
 * (so a conversation's messages reach the server in the order the user wrote them), resending
 * the very same request on transient failures until the server answers with the stored message.
 */
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { SendMessageRequest } from "../../gen/parley/v1/message_service_pb.ts";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.ts";
import { Gate, Wakeup } from "./gate.ts";
import { OutboxStore, type OutboxDraft, type OutboxItem } from "./outbox-store.ts";
import { classifyFailure, describeFailure } from "./rpc-errors.ts";

/** How often a stale key epoch is answered by re-encrypting before the send is given up. */
const MAX_STALE_EPOCH_RETRIES = 5;

/** What the outbox needs from the session; injected so the loop can be tested on its own. */
export interface OutboxOptions {
  store: OutboxStore;
  /**
   * Builds the wire request for an entry (encrypting it for an encrypted conversation).
   * `fresh`: the conversation's key epoch was stale, re-read it before encrypting.
   */
  buildRequest(item: OutboxItem, fresh: boolean): Promise<SendMessageRequest>;
  /** Calls SendMessage; resolves with the stored message. */
  send(request: SendMessageRequest, signal: AbortSignal): Promise<Message>;
  /** Closed while the session is not connected: nothing is sent then. */
  gate: Gate;
  onSent?(item: OutboxItem, message: Message): void;
  onFailed?(item: OutboxItem, reason: string): void;
  backoff?: BackoffOptions;
}

/** A send the app queued: its ids at once, the stored message later. */
export interface PendingSend {
  /** The local id the app can show the pending message under (the client_message_id). */
  localId: string;
  /** Where it sits in the outbox's order. */
  localSeq: bigint;
  /** Resolves with the stored message; rejects when the server refused the send for good. */
  message: Promise<Message>;
}

/** Error a PendingSend rejects with when the server refused the send for good. */
export class SendFailedError extends Error {
  override readonly name = "SendFailedError";
  readonly localId: string;
  constructor(localId: string, reason: string) {
    super(reason);
    this.localId = localId;
  }
}

export class Outbox {
  readonly #o: OutboxOptions;
  readonly #wakeup = new Wakeup();
  readonly #waiting = new Map<bigint, { resolve(m: Message): void; reject(e: Error): void }>();

  constructor(options: OutboxOptions) {
    this.#o = options;
  }

  /**
   * Writes the send to the store (before any network attempt) and returns. The sender loop
   * picks it up in local order.
   */
  async enqueue(conversationId: string, draft: OutboxDraft): Promise<PendingSend> {
    const localSeq = await this.#o.store.nextLocalSeq();
    const item: OutboxItem = { localSeq, conversationId, clientMessageId: globalThis.crypto.randomUUID(), draft };
    const message = new Promise<Message>((resolve, reject) => this.#waiting.set(localSeq, { resolve, reject }));
    message.catch(() => undefined); // the app may ignore the promise; the failure is also an event
    await this.#o.store.put(item);
    this.#wakeup.notify();
    return { localId: item.clientMessageId, localSeq, message };
  }

  /** Entries not yet confirmed by the server (failed ones included), in local order. */
  entries(): Promise<OutboxItem[]> {
    return this.#o.store.list();
  }

  /** Drops a failed entry (the app decided not to send it). */
  async discard(localId: string): Promise<void> {
    const item = (await this.#o.store.list()).find((i) => i.clientMessageId === localId);
    if (item) await this.#o.store.delete(item.localSeq);
  }

  /** Puts a failed entry back in the queue, keeping its place and its client_message_id. */
  async retry(localId: string): Promise<void> {
    const item = (await this.#o.store.list()).find((i) => i.clientMessageId === localId);
    if (!item?.failure) return;
    delete item.failure;
    await this.#o.store.put(item);
    this.#wakeup.notify();
  }

  /** The sender loop; runs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#o.gate.wait(signal);
      const due = (await this.#o.store.list()).filter((i) => i.failure === undefined);
      if (due.length === 0) {
        await this.#wakeup.wait(signal);
        continue;
      }
      for (const item of due) {
        if (signal.aborted) return;
        await this.#deliver(item, signal);
      }
    }
  }

  /** Sends one entry until the server stores it or refuses it for good. */
  async #deliver(item: OutboxItem, signal: AbortSignal): Promise<void> {
    let attempt = 0;
    let staleRetries = 0;
    let fresh = false;
    while (!signal.aborted) {
      await this.#o.gate.wait(signal);
      if (signal.aborted) return;
      try {
        if (!item.request) {
          item.request = await this.#o.buildRequest(item, fresh);
          await this.#o.store.put(item); // later attempts resend exactly these bytes
        }
        const message = await this.#o.send(item.request, signal);
        await this.#o.store.delete(item.localSeq);
        this.#settle(item, message);
        return;
      } catch (err) {
        if (signal.aborted) return;
        const kind = classifyFailure(err);
        if (kind === "stale_epoch" && staleRetries < MAX_STALE_EPOCH_RETRIES) {
          staleRetries++;
          fresh = true;
          delete item.request; // encrypt again, same client_message_id
          continue;
        }
        if (kind === "retry") {
          await sleep(backoffDelay(attempt++, this.#o.backoff), signal);
          continue;
        }
        item.failure = describeFailure(err);
        await this.#o.store.put(item);
        this.#fail(item, item.failure);
        return;
      }
    }
  }

  #settle(item: OutboxItem, message: Message): void {
    this.#waiting.get(item.localSeq)?.resolve(message);
    this.#waiting.delete(item.localSeq);
    this.#o.onSent?.(item, message);
  }

  #fail(item: OutboxItem, reason: string): void {
    this.#waiting.get(item.localSeq)?.reject(new SendFailedError(item.clientMessageId, reason));
    this.#waiting.delete(item.localSeq);
    this.#o.onFailed?.(item, reason);
  }
}
