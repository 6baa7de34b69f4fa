/**
 * Hands a conversation's messages to the app in seq order, each once, whatever the network
 * did: a message that arrives after a gap (a missed event, a resync, a reconnect that raced a
 * send) first pulls the missing seqs from history; a seq already handed over is dropped.
 * Seqs are gapless per conversation (message.proto), which is what makes a gap detectable.
 */
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { PositionStore } from "./sync-state.ts";

/** Reads history FORWARD after `afterSeq` (exclusive), at most one page. */
export type FetchAfter = (conversationId: string, afterSeq: bigint) => Promise<Message[]>;

export interface OrderingBufferOptions {
  positions: PositionStore;
  fetchAfter: FetchAfter;
}

/** Not safe for concurrent calls on one conversation: the feed loop handles events one by one. */
export class OrderingBuffer {
  readonly #positions: PositionStore;
  readonly #fetchAfter: FetchAfter;

  constructor(options: OrderingBufferOptions) {
    this.#positions = options.positions;
    this.#fetchAfter = options.fetchAfter;
  }

  /**
   * Takes a message from the feed; returns what the app should see now, in seq order: nothing
   * for a seq it already saw, the message itself, or the missing ones before it and then it.
   * A conversation seen for the first time starts at this message (history is the app's to load).
   * The caller records each one with `delivered` once the app has it: a crash in between then
   * hands a message over again (the app keys it by conversation and seq) instead of losing it.
   */
  async accept(message: Message): Promise<Message[]> {
    const id = message.conversationId;
    const last = (await this.#positions.get(id)) ?? message.seq - 1n;
    if (message.seq <= last) return [];
    const out = message.seq === last + 1n ? [message] : [...(await this.#fill(id, last, message.seq - 1n)), message];
    return out.filter((m, i) => i === 0 || m.seq > out[i - 1]!.seq);
  }

  /** Records that the app has the message: the feed will not hand it over again. */
  delivered(message: Message): Promise<void> {
    return this.#positions.set(message.conversationId, message.seq);
  }

  /**
   * Brings a conversation up to `lastSeq` from history (after a resync or on start): returns
   * the messages after the stored position, each to be recorded with `delivered`. Without a
   * stored position it only records lastSeq.
   */
  async catchUp(conversationId: string, lastSeq: bigint): Promise<Message[]> {
    const last = await this.#positions.get(conversationId);
    if (last === undefined) {
      await this.#positions.set(conversationId, lastSeq);
      return [];
    }
    if (lastSeq <= last) return [];
    return this.#fill(conversationId, last, lastSeq);
  }

  /** Moves the position without handing anything over (the app reloads that conversation itself). */
  skipTo(conversationId: string, seq: bigint): Promise<void> {
    return this.#positions.set(conversationId, seq);
  }

  /** The messages with after < seq <= upTo, in order, paging through history. */
  async #fill(conversationId: string, after: bigint, upTo: bigint): Promise<Message[]> {
    const out: Message[] = [];
    let from = after;
    while (from < upTo) {
      const page = (await this.#fetchAfter(conversationId, from)).filter((m) => m.seq > from).sort((a, b) => (a.seq < b.seq ? -1 : 1));
      if (page.length === 0) break;
      for (const m of page) if (m.seq <= upTo) out.push(m);
      from = page.at(-1)!.seq;
    }
    return out;
  }
}
