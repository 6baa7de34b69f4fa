/**
 * DIRECT message keys other devices re-shared on request (MessageKeyShare), kept per
 * (conversation, seq) with the device that shared them. A device needs no copy of the keys it
 * sent: every DIRECT envelope boxes its key to the sending device too, so the envelope itself
 * opens again for rereading and for answering a key request.
 */
import type { ClientStore } from "../storage.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

/** A message key another device re-shared. */
export interface SharedDirectKey {
  readonly senderDeviceId: string;
  readonly messageKey: Uint8Array;
}

export class DirectKeys {
  readonly #store: ClientStore;

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /** Keeps a key another device re-shared. */
  async rememberShared(conversationId: string, seq: bigint, shared: SharedDirectKey): Promise<void> {
    await this.#store.put(storeKeys.sharedDirectKey(conversationId, seq), encodeRecord(shared));
  }

  /** A re-shared key for the message at seq, if one arrived. */
  async sharedKey(conversationId: string, seq: bigint): Promise<SharedDirectKey | undefined> {
    const bytes = await this.#store.get(storeKeys.sharedDirectKey(conversationId, seq));
    return bytes === undefined ? undefined : decodeRecord<SharedDirectKey>(bytes);
  }
}
