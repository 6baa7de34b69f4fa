/**
 * The feed's durable progress: the Subscribe cursor and, per conversation, the highest seq
 * handed to the app. Both live in the ClientStore so a restarted client resumes where it
 * stopped, loses nothing and repeats nothing.
 */
import type { ClientStore } from "./storage.ts";

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
    const raw = await this.#store.get(CURSOR_KEY);
    return raw ? new TextDecoder().decode(raw) : "";
  }

  async setCursor(cursor: string): Promise<void> {
    if (cursor) await this.#store.put(CURSOR_KEY, new TextEncoder().encode(cursor));
  }

  async get(conversationId: string): Promise<bigint | undefined> {
    const cached = this.#positions.get(conversationId);
    if (cached !== undefined) return cached;
    const raw = await this.#store.get(POSITION_PREFIX + conversationId);
    if (!raw) return undefined;
    const seq = BigInt(new TextDecoder().decode(raw));
    this.#positions.set(conversationId, seq);
    return seq;
  }

  async set(conversationId: string, seq: bigint): Promise<void> {
    this.#positions.set(conversationId, seq);
    await this.#store.put(POSITION_PREFIX + conversationId, new TextEncoder().encode(seq.toString()));
  }
}
