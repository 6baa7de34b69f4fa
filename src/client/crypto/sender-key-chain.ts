/**
 * Sender-key chains for GROUP conversations. A sending device hands its chain key to the
 * members once; each message then uses the next link, so the sender pays one encryption per
 * message however large the group is. The chain only moves forward (hashing cannot be undone),
 * so a key handed out at index i opens nothing sent before i. The sending device gives each
 * device one link: the current one when it first distributes to it. On a key request it hands
 * that same link out again, to another user's device never an earlier one (a device never
 * given the key gets the current link), and the first link only to its own user's devices.
 *
 *   MK_i     = first 32 bytes of nacl.hash([0x01] ‖ CK_i)
 *   CK_{i+1} = first 32 bytes of nacl.hash([0x02] ‖ CK_i)
 *
 * Receivers keep the chain at its next unread index and the message keys of indices they
 * skipped (messages can arrive out of order), bounded so a hostile index cannot make a device
 * hash or store without end. States are immutable: a caller commits the next state only once
 * the message it was derived for has opened.
 */
import nacl from "tweetnacl";
import { concatBytes, toHex } from "./bytes.ts";
import { DecryptError } from "./decrypt-error.ts";

/** How many skipped message keys a receiver keeps per chain, and how far ahead it derives. */
export const MAX_SKIPPED_MESSAGE_KEYS = 2000;

const KEY_LENGTH = 32;
const MESSAGE_KEY_LABEL = Uint8Array.of(0x01);
const CHAIN_KEY_LABEL = Uint8Array.of(0x02);

/** The message key of the chain link whose chain key is given. */
export function messageKeyOf(chainKey: Uint8Array): Uint8Array {
  return nacl.hash(concatBytes(MESSAGE_KEY_LABEL, chainKey)).slice(0, KEY_LENGTH);
}

/** The chain key of the next link. */
export function nextChainKey(chainKey: Uint8Array): Uint8Array {
  return nacl.hash(concatBytes(CHAIN_KEY_LABEL, chainKey)).slice(0, KEY_LENGTH);
}

/** A sending device's own sender key: its random id and the link it will use next. */
export interface SenderKey {
  readonly id: string;
  readonly index: number;
  readonly chainKey: Uint8Array;
}

/** A fresh sender key for one (conversation, epoch). */
export function createSenderKey(): SenderKey {
  return { id: toHex(nacl.randomBytes(16)), index: 0, chainKey: nacl.randomBytes(KEY_LENGTH) };
}

/** The sender key after its current link was used. */
export function advanceSenderKey(key: SenderKey): SenderKey {
  return { id: key.id, index: key.index + 1, chainKey: nextChainKey(key.chainKey) };
}

/**
 * The chain key at a later index of a sender key, for the sending device itself: it keeps the
 * key's first link, not every message key, and derives what it needs to reread its own
 * messages or hand the key out again.
 */
export function chainKeyAt(key: SenderKey, index: number): Uint8Array {
  if (index < key.index) throw new DecryptError("unknown_key", `index ${index} is before the sender key's first link`);
  let chainKey = key.chainKey;
  for (let at = key.index; at < index; at++) chainKey = nextChainKey(chainKey);
  return chainKey;
}

/** What a receiving device knows of one sender key. */
export interface ReceiverChain {
  /** The lowest index this device was ever given; an earlier distribution may lower it. */
  readonly startIndex: number;
  /** Indices below this cannot be opened: never given, or dropped from the skipped window. */
  readonly forgottenBelow: number;
  /** The next index not yet derived. */
  readonly nextIndex: number;
  /** The chain key at nextIndex. */
  readonly chainKey: Uint8Array;
  /** Message keys of derived indices not opened yet; an index below nextIndex missing here was opened. */
  readonly skipped: ReadonlyMap<number, Uint8Array>;
}

/** A receiver chain from a SenderKeyDistribution's index and chain key. */
export function receiverChainFrom(index: number, chainKey: Uint8Array): ReceiverChain {
  return { startIndex: index, forgottenBelow: index, nextIndex: index, chainKey, skipped: new Map() };
}

/** The message key for index, and the chain to commit once the message opened. */
export interface TakenMessageKey {
  readonly messageKey: Uint8Array;
  readonly next: ReceiverChain;
}

/**
 * The message key of one index: a skipped key, or one derived ahead. Throws "replayed" for
 * an index already opened and "unknown_key" for one dropped, never given, or further ahead
 * than the window.
 */
export function takeMessageKey(chain: ReceiverChain, index: number): TakenMessageKey {
  if (index < chain.forgottenBelow) throw new DecryptError("unknown_key", `index ${index} is before what this device holds of the sender key`);
  if (index < chain.nextIndex) {
    const messageKey = chain.skipped.get(index);
    if (messageKey === undefined) throw new DecryptError("replayed", `index ${index} of this sender key was already opened`);
    const skipped = new Map(chain.skipped);
    skipped.delete(index);
    return { messageKey, next: { ...chain, skipped } };
  }
  if (index - chain.nextIndex > MAX_SKIPPED_MESSAGE_KEYS) {
    throw new DecryptError("unknown_key", `index ${index} is more than ${MAX_SKIPPED_MESSAGE_KEYS} ahead of the sender key's chain`);
  }
  const skipped = new Map(chain.skipped);
  let chainKey = chain.chainKey;
  for (let skippedIndex = chain.nextIndex; skippedIndex < index; skippedIndex++) {
    skipped.set(skippedIndex, messageKeyOf(chainKey));
    chainKey = nextChainKey(chainKey);
  }
  const next = boundSkipped({ ...chain, nextIndex: index + 1, chainKey: nextChainKey(chainKey), skipped });
  return { messageKey: messageKeyOf(chainKey), next };
}

/**
 * Folds in a distribution of the same sender key at an earlier index (the sender answering a
 * key request from one of its own user's devices): the keys between it and what the device held become skipped keys. Anything
 * else (a later or equal index, a gap beyond the window, or a chain that already dropped keys
 * and so can no longer tell opened indices from dropped ones) leaves the chain as it was.
 */
export function mergeEarlierDistribution(chain: ReceiverChain, index: number, chainKey: Uint8Array): ReceiverChain {
  const gap = chain.startIndex - index;
  if (gap <= 0 || gap > MAX_SKIPPED_MESSAGE_KEYS || chain.forgottenBelow !== chain.startIndex) return chain;
  const skipped = new Map(chain.skipped);
  let linkKey = chainKey;
  for (let earlierIndex = index; earlierIndex < chain.startIndex; earlierIndex++) {
    skipped.set(earlierIndex, messageKeyOf(linkKey));
    linkKey = nextChainKey(linkKey);
  }
  return boundSkipped({ ...chain, startIndex: index, forgottenBelow: index, skipped });
}

/** Drops the oldest skipped keys past the window, remembering that they are gone. */
function boundSkipped(chain: ReceiverChain): ReceiverChain {
  const excess = chain.skipped.size - MAX_SKIPPED_MESSAGE_KEYS;
  if (excess <= 0) return chain;
  const oldest = [...chain.skipped.keys()].sort((a, b) => a - b).slice(0, excess);
  const skipped = new Map(chain.skipped);
  for (const index of oldest) skipped.delete(index);
  const lastDropped = oldest[oldest.length - 1] ?? chain.forgottenBelow;
  return { ...chain, skipped, forgottenBelow: Math.max(chain.forgottenBelow, lastDropped + 1) };
}
