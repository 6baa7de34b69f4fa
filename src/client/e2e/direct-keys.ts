/**
 * DIRECT message keys outside their envelopes. The keys this device sent are kept, a bounded
 * number, because its own device gets no key box (it can reread its recent messages) and to
 * answer a peer device's key request. Keys other devices re-shared on request are kept per
 * (conversation, seq) with the device that shared them.
 */
import type { ClientStore } from "../storage.ts";
import { toHex } from "../crypto/index.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

/** How many sent message keys a device keeps: enough for recent history and late requests. */
export const MAX_SENT_DIRECT_KEYS = 1000;

interface SentDirectKey {
  readonly serial: number;
  readonly conversationId: string;
  readonly nonce: Uint8Array;
  readonly messageKey: Uint8Array;
}

/** A message key another device re-shared. */
export interface SharedDirectKey {
  readonly senderDeviceId: string;
  readonly messageKey: Uint8Array;
}

export class DirectKeys {
  readonly #store: ClientStore;
  /** Sent keys by envelope nonce (random, so unique), in the order they were sent. */
  #sent: Map<string, SentDirectKey> | undefined;

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /** Keeps the key of a message this device sealed, forgetting the oldest past the bound. */
  async rememberSent(conversationId: string, nonce: Uint8Array, messageKey: Uint8Array): Promise<void> {
    const sent = await this.#sentKeys();
    const serial = ([...sent.values()].at(-1)?.serial ?? 0) + 1;
    const record: SentDirectKey = { serial, conversationId, nonce, messageKey };
    await this.#store.put(storeKeys.sentDirectKey(serial), encodeRecord(record));
    sent.set(toHex(nonce), record);
    for (const [nonceHex, oldest] of sent) {
      if (sent.size <= MAX_SENT_DIRECT_KEYS) break;
      await this.#store.delete(storeKeys.sentDirectKey(oldest.serial));
      sent.delete(nonceHex);
    }
  }

  /** The key of a message this device sent in the conversation, if still kept. */
  async sentKey(conversationId: string, nonce: Uint8Array): Promise<Uint8Array | undefined> {
    const record = (await this.#sentKeys()).get(toHex(nonce));
    return record?.conversationId === conversationId ? record.messageKey : undefined;
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

  async #sentKeys(): Promise<Map<string, SentDirectKey>> {
    if (this.#sent === undefined) {
      const records = (await this.#store.list(storeKeys.sentDirectKeys)).map(([, bytes]) => decodeRecord<SentDirectKey>(bytes));
      this.#sent = new Map(records.map((record) => [toHex(record.nonce), record]));
    }
    return this.#sent;
  }
}
