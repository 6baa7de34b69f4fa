/**
 * The durable half of the offline outbox: every send is written here before the network is
 * tried, so a crash or a closed tab never loses one, and a restart resends it with the same
 * client_message_id (which the server deduplicates).
 *
 * Layout in the ClientStore: "outbox/seq" holds the last local sequence handed out;
 * "outbox/items/<seq as 16 digits>" one entry each, so listing the prefix yields local order.
 */
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { base64Decode, base64Encode } from "@bufbuild/protobuf/wire";
import { PlainContentSchema, type PlainContent } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { SendMessageRequestSchema, type SendMessageRequest } from "../../gen/parley/v1/message_service_pb.ts";
import { getText, putText, type ClientStore } from "./storage.ts";

const SEQ_KEY = "outbox/seq";
const ITEM_PREFIX = "outbox/items/";

/** What the app asked to send, kept so an encrypted send can be encrypted again on a new epoch. */
export interface OutboxDraft {
  content: PlainContent;
  replyToSeq?: bigint;
  mentionUserIds: string[];
}

/** One queued send. */
export interface OutboxItem {
  /** Monotonic per store; the order sends leave in. */
  localSeq: bigint;
  conversationId: string;
  /** Fixed at enqueue time and reused by every attempt, so the server stores the message once. */
  clientMessageId: string;
  draft: OutboxDraft;
  /**
   * The request of the first attempt (encrypted, for an encrypted conversation), resent
   * unchanged by later attempts; replaced only when the key epoch was stale.
   */
  request?: SendMessageRequest;
  /** Set when the server refused the send for good; the item stays until the app discards it. */
  failure?: string;
}

/** The stored shape: JSON with protobuf parts as base64, so any store that holds bytes works. */
interface StoredItem {
  localSeq: string;
  conversationId: string;
  clientMessageId: string;
  content: string;
  replyToSeq?: string;
  mentionUserIds: string[];
  request?: string;
  failure?: string;
}

/** Reads and writes outbox entries; callers serialize access (the SDK has one writer per store). */
export class OutboxStore {
  readonly #store: ClientStore;
  #seqLock: Promise<unknown> = Promise.resolve();

  constructor(store: ClientStore) {
    this.#store = store;
  }

  /** The next local sequence, persisted before it is returned so it is never handed out twice. */
  nextLocalSeq(): Promise<bigint> {
    const next = this.#seqLock.then(async () => {
      const seq = BigInt((await getText(this.#store, SEQ_KEY)) ?? "0") + 1n;
      await putText(this.#store, SEQ_KEY, seq.toString());
      return seq;
    });
    this.#seqLock = next.catch(() => undefined);
    return next;
  }

  async put(item: OutboxItem): Promise<void> {
    await this.#store.put(itemKey(item.localSeq), encodeItem(item));
  }

  async delete(localSeq: bigint): Promise<void> {
    await this.#store.delete(itemKey(localSeq));
  }

  async get(localSeq: bigint): Promise<OutboxItem | undefined> {
    const raw = await this.#store.get(itemKey(localSeq));
    return raw ? decodeItem(raw) : undefined;
  }

  /** Every entry, oldest local sequence first. */
  async list(): Promise<OutboxItem[]> {
    return (await this.#store.list(ITEM_PREFIX)).map(([, raw]) => decodeItem(raw));
  }
}

function itemKey(localSeq: bigint): string {
  return ITEM_PREFIX + localSeq.toString().padStart(16, "0");
}

function encodeItem(item: OutboxItem): Uint8Array {
  const stored: StoredItem = {
    localSeq: item.localSeq.toString(),
    conversationId: item.conversationId,
    clientMessageId: item.clientMessageId,
    content: base64Encode(toBinary(PlainContentSchema, item.draft.content)),
    mentionUserIds: item.draft.mentionUserIds,
  };
  if (item.draft.replyToSeq !== undefined) stored.replyToSeq = item.draft.replyToSeq.toString();
  if (item.request) stored.request = base64Encode(toBinary(SendMessageRequestSchema, item.request));
  if (item.failure !== undefined) stored.failure = item.failure;
  return new TextEncoder().encode(JSON.stringify(stored));
}

function decodeItem(raw: Uint8Array): OutboxItem {
  const s = JSON.parse(new TextDecoder().decode(raw)) as StoredItem;
  const item: OutboxItem = {
    localSeq: BigInt(s.localSeq),
    conversationId: s.conversationId,
    clientMessageId: s.clientMessageId,
    draft: {
      content: s.content ? fromBinary(PlainContentSchema, base64Decode(s.content)) : create(PlainContentSchema),
      mentionUserIds: s.mentionUserIds ?? [],
    },
  };
  if (s.replyToSeq !== undefined) item.draft.replyToSeq = BigInt(s.replyToSeq);
  if (s.request) item.request = fromBinary(SendMessageRequestSchema, base64Decode(s.request));
  if (s.failure !== undefined) item.failure = s.failure;
  return item;
}
