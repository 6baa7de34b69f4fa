/**
 * Where the SDK keeps what must survive a restart: device keys, sender-key state, the
 * offline outbox and the feed cursor. Pluggable, so a Node app can use a file, a browser app
 * IndexedDB, and a test memory. Values are bytes; keys are "/"-separated names.
 */
export interface ClientStore {
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every entry whose key starts with prefix, in key order. */
  list(prefix: string): Promise<Array<[string, Uint8Array]>>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A text value from the store (a cursor, an id, a number in decimal). */
export async function getText(store: ClientStore, key: string): Promise<string | undefined> {
  const bytes = await store.get(key);
  return bytes === undefined ? undefined : decoder.decode(bytes);
}

/** Keeps a text value under the key. */
export function putText(store: ClientStore, key: string, text: string): Promise<void> {
  return store.put(key, encoder.encode(text));
}

/** A store that lives as long as the process: for tests and throwaway clients. */
export class MemoryStore implements ClientStore {
  readonly #entries = new Map<string, Uint8Array>();

  async get(key: string): Promise<Uint8Array | undefined> {
    return this.#entries.get(key);
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    this.#entries.set(key, value.slice());
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key);
  }

  async list(prefix: string): Promise<Array<[string, Uint8Array]>> {
    return [...this.#entries].filter(([key]) => key.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}
