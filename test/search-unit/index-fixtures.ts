/** Builders for index-level search tests: constructed message events and index queries. */
import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EventSchema, MessageDeletedSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { EncryptedEnvelopeSchema, MessageSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import type { StoredEvent } from "../../src/log/index.ts";
import { parseQuery } from "../../src/search/query-parser.ts";
import type { IndexQuery } from "../../src/search/search-index.ts";
import type { Delivered } from "../../src/workers/index.ts";

let position = 0n;

export interface MessageSpec {
  conversationId: string;
  seq: bigint;
  text?: string;
  version?: number;
  senderId?: string;
  createdAtMs?: number;
  id?: string;
}

export function message(spec: MessageSpec): Message {
  return create(MessageSchema, {
    id: spec.id ?? randomUUID(),
    conversationId: spec.conversationId,
    seq: spec.seq,
    senderId: spec.senderId ?? "alice",
    createdAt: timestampFromMs(spec.createdAtMs ?? Date.now()),
    version: spec.version ?? 1,
    content: spec.text === undefined
      ? { case: "envelope", value: create(EncryptedEnvelopeSchema, { ciphertext: new Uint8Array([1, 2, 3]), algorithm: "x25519-xsalsa20-poly1305" }) }
      : { case: "text", value: spec.text },
  });
}

function stored(conversationId: string, kind: Event["kind"], createdAtMs = Date.now()): Delivered<StoredEvent> {
  position += 1n;
  const event = create(EventSchema, { id: randomUUID(), conversationId, actorId: "alice", createdAt: timestampFromMs(createdAtMs), kind });
  const value: StoredEvent = { partition: 0, position, conversationId, targetUserId: null, event, payload: toBinary(EventSchema, event) };
  return { value, subject: "test.events.message", deliveryCount: 1 };
}

export const created = (m: Message) => stored(m.conversationId, { case: "messageCreated", value: { $typeName: "parley.v1.MessageCreated", message: m } });
export const edited = (m: Message) => stored(m.conversationId, { case: "messageEdited", value: { $typeName: "parley.v1.MessageEdited", message: m } });
export const deleted = (m: Message) =>
  stored(m.conversationId, { case: "messageDeleted", value: create(MessageDeletedSchema, { messageSeq: m.seq, messageId: m.id }) });

/** A query over the given conversations, newest and best first, 50 per page. */
export function query(text: string, conversationIds: readonly string[], more: Partial<IndexQuery> = {}): IndexQuery {
  return {
    query: parseQuery(text),
    conversationIds,
    senderId: null,
    createdFromMs: null,
    createdBeforeMs: null,
    order: "relevance",
    limit: 50,
    after: null,
    ...more,
  };
}
