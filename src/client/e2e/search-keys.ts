/**
 * Blind-search keys per (conversation, epoch). A device keeps every key it has seen for an
 * epoch, since members' tokens were made under whichever key they held, and sends with the
 * preferred one so that all devices converge on a single key.
 */
import type { ClientStore } from "../storage.ts";
import { createSearchKey, preferredSearchKey, toHex } from "../crypto/index.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

interface SearchKeyRecord {
  readonly keyEpoch: number;
  readonly key: Uint8Array;
}

/** The keys held for one epoch. */
export interface EpochSearchKeys {
  readonly keyEpoch: number;
  readonly keys: Uint8Array[];
}

export class SearchKeyStore {
  readonly #store: ClientStore;

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /** Keeps a key another device distributed (or this one made). */
  async add(conversationId: string, keyEpoch: number, key: Uint8Array): Promise<void> {
    const record: SearchKeyRecord = { keyEpoch, key };
    await this.#store.put(storeKeys.searchKey(conversationId, keyEpoch, toHex(key)), encodeRecord(record));
  }

  /** Every key held for the conversation, grouped by epoch, newest epoch first. */
  async byEpoch(conversationId: string): Promise<EpochSearchKeys[]> {
    const grouped = new Map<number, Uint8Array[]>();
    for (const [, bytes] of await this.#store.list(storeKeys.searchKeysOf(conversationId))) {
      const record = decodeRecord<SearchKeyRecord>(bytes);
      grouped.set(record.keyEpoch, [...(grouped.get(record.keyEpoch) ?? []), record.key]);
    }
    return [...grouped].map(([keyEpoch, keys]) => ({ keyEpoch, keys })).sort((a, b) => b.keyEpoch - a.keyEpoch);
  }

  /** The key to send with in an epoch, if any is held. */
  async preferred(conversationId: string, keyEpoch: number): Promise<Uint8Array | undefined> {
    const epoch = (await this.byEpoch(conversationId)).find((entry) => entry.keyEpoch === keyEpoch);
    return preferredSearchKey(epoch?.keys ?? []);
  }

  /** The key to send with, made (and kept) first when the device holds none for the epoch. */
  async preferredOrCreate(conversationId: string, keyEpoch: number): Promise<Uint8Array> {
    const held = await this.preferred(conversationId, keyEpoch);
    if (held !== undefined) return held;
    const key = createSearchKey();
    await this.add(conversationId, keyEpoch, key);
    return key;
  }
}
