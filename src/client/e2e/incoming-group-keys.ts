/**
 * Other devices' sender keys, as their distributions arrived: per (sender device, sender key
 * id) the receiver chain, with what binds it — the conversation and epoch it was given for,
 * and the sender's user and signing key (kept with the chain so that messages of a device
 * revoked since still verify).
 */
import type { SenderKeyDistribution } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import type { Device } from "../../../gen/parley/v1/device_pb.ts";
import type { ClientStore } from "../storage.ts";
import { DecryptError, mergeEarlierDistribution, receiverChainFrom, type ReceiverChain } from "../crypto/index.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

const CHAIN_KEY_LENGTH = 32;

/** A sender key this device received. */
export interface IncomingGroupKey {
  readonly conversationId: string;
  readonly keyEpoch: number;
  readonly senderUserId: string;
  readonly senderDeviceId: string;
  readonly senderKeyId: string;
  readonly senderSigningPublicKey: Uint8Array;
  readonly chain: ReceiverChain;
}

/**
 * A link of a sender's chain already used to open a message, and where that message is. The
 * chain has moved past it, so reading the message again (a restart, a history page, an earlier
 * version in its edit history) takes the key from here; the same link turning up at another
 * place is a replay.
 */
export interface OpenedGroupKey {
  readonly conversationId: string;
  readonly seq: bigint;
  readonly messageKey: Uint8Array;
}

/** Names one link of one sender's chain. */
export interface ChainLink {
  readonly senderDeviceId: string;
  readonly senderKeyId: string;
  readonly index: number;
}

/** The stored form: JSON has no Map, so the skipped keys are pairs. */
interface StoredIncomingGroupKey extends Omit<IncomingGroupKey, "chain"> {
  readonly chain: Omit<ReceiverChain, "skipped"> & { readonly skipped: Array<[number, Uint8Array]> };
}

export class IncomingGroupKeys {
  readonly #store: ClientStore;

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /**
   * Installs a distributed sender key; a second distribution of a key already held can only
   * add earlier links (see mergeEarlierDistribution), never rewind the chain past a replay.
   */
  async install(distribution: SenderKeyDistribution, sender: Device): Promise<void> {
    if (distribution.chainKey.length !== CHAIN_KEY_LENGTH) throw new DecryptError("malformed", "sender key distribution has a chain key of the wrong length");
    const existing = await this.find(sender.deviceId, distribution.senderKeyId);
    if (existing !== undefined) {
      if (existing.conversationId !== distribution.conversationId || existing.keyEpoch !== distribution.keyEpoch) return;
      await this.save({ ...existing, chain: mergeEarlierDistribution(existing.chain, distribution.index, distribution.chainKey) });
      return;
    }
    await this.save({
      conversationId: distribution.conversationId,
      keyEpoch: distribution.keyEpoch,
      senderUserId: sender.userId,
      senderDeviceId: sender.deviceId,
      senderKeyId: distribution.senderKeyId,
      senderSigningPublicKey: sender.signingPublicKey,
      chain: receiverChainFrom(distribution.index, distribution.chainKey),
    });
  }

  /** The sender key a message names, if this device received it. */
  async find(senderDeviceId: string, senderKeyId: string): Promise<IncomingGroupKey | undefined> {
    const bytes = await this.#store.get(storeKeys.receivedChain(senderDeviceId, senderKeyId));
    if (bytes === undefined) return undefined;
    const stored = decodeRecord<StoredIncomingGroupKey>(bytes);
    return { ...stored, chain: { ...stored.chain, skipped: new Map(stored.chain.skipped) } };
  }

  /** Keeps a key's chain (after a message opened, or a distribution merged). */
  async save(key: IncomingGroupKey): Promise<void> {
    const stored: StoredIncomingGroupKey = { ...key, chain: { ...key.chain, skipped: [...key.chain.skipped] } };
    await this.#store.put(storeKeys.receivedChain(key.senderDeviceId, key.senderKeyId), encodeRecord(stored));
  }

  /** Keeps the key a link opened, and the message it opened. */
  async rememberOpened(link: ChainLink, opened: OpenedGroupKey): Promise<void> {
    const stored = { conversationId: opened.conversationId, seq: opened.seq.toString(), messageKey: opened.messageKey };
    await this.#store.put(storeKeys.openedGroupKey(link.senderDeviceId, link.senderKeyId, link.index), encodeRecord(stored));
  }

  /** What the link opened before, if it did. */
  async openedWith(link: ChainLink): Promise<OpenedGroupKey | undefined> {
    const bytes = await this.#store.get(storeKeys.openedGroupKey(link.senderDeviceId, link.senderKeyId, link.index));
    if (bytes === undefined) return undefined;
    const stored = decodeRecord<{ conversationId: string; seq: string; messageKey: Uint8Array }>(bytes);
    return { conversationId: stored.conversationId, seq: BigInt(stored.seq), messageKey: stored.messageKey };
  }
}
