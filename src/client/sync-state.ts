/**
 * The feed's durable progress: the Subscribe cursor and, per conversation, the highest seq
 * handed to the app. Both live in the ClientStore so a restarted client resumes where it
 * stopped, loses nothing and repeats nothing.
 */
import { getText, putText, type ClientStore } from "./storage.ts";

const CURSOR_KEY = "sync/cursor";
const POSITION_PREFIX = "sync/seq/";

/** Per-conversation delivery positions (see OrderingBuffer). */
export interface PositionStore {
  get(conversationId: string): Promise<bigint | undefined>;
  set(conversationId: string, seq: bigint): Promise<void>;
}

export class SyncState implements PositionStore {
  readonly #store: ClientStore;
  readonly #positions = new Map<string, bigint>();

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /** The cursor to resume from; "" starts at "now". */
  async cursor(): Promise<string> {
    return (await getText(this.#store, CURSOR_KEY)) ?? "";
  }

  async setCursor(cursor: string): Promise<void> {
    if (cursor) await putText(this.#store, CURSOR_KEY, cursor);
  }

  async get(conversationId: string): Promise<bigint | undefined> {
    const cached = this.#positions.get(conversationId);
    if (cached !== undefined) return cached;
    const text = await getText(this.#store, POSITION_PREFIX + conversationId);
    if (!text) return undefined;
    const seq = BigInt(text);
    this.#positions.set(conversationId, seq);
    return seq;
  }

  async set(conversationId: string, seq: bigint): Promise<void> {
    this.#positions.set(conversationId, seq);
    await putText(this.#store, POSITION_PREFIX + conversationId, seq.toString());
  }
}
