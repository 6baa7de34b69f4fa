/**
 * How a committed event travels on NATS: the protobuf Event as the body; its log partition,
 * position and routing in headers. Shared by the live bus and the durable consumers so both
 * read it alike.
 */
import { storedEventFrom, type StoredEvent } from "./event-log.ts";

const PARTITION = "Parley-Partition";
const POSITION = "Parley-Position";
const CONVERSATION = "Parley-Conversation";
const TARGET_USER = "Parley-Target-User";

/** Header names and values for an event (a plain map, so any transport can carry it). */
export function eventHeaders(stored: StoredEvent): Map<string, string> {
  const headers = new Map<string, string>([
    [PARTITION, String(stored.partition)],
    [POSITION, stored.position.toString()],
  ]);
  if (stored.conversationId !== null) headers.set(CONVERSATION, stored.conversationId);
  if (stored.targetUserId !== null) headers.set(TARGET_USER, stored.targetUserId);
  return headers;
}

/**
 * The event back from its body and headers, decoded when first read (see storedEventFrom);
 * throws when the headers are not an event's.
 */
export function receiveStoredEvent(data: Uint8Array, headers: ReadonlyMap<string, string>): StoredEvent {
  const partition = headers.get(PARTITION);
  const position = headers.get(POSITION);
  if (!partition || !/^\d{1,4}$/.test(partition) || !position || !/^\d+$/.test(position)) throw new Error("event without valid partition and position headers");
  return storedEventFrom(Number(partition), BigInt(position), headers.get(CONVERSATION) || null, headers.get(TARGET_USER) || null, data);
}

/** The event back from its body and headers, decoded now; throws when either is not one of ours. */
export function decodeStoredEvent(data: Uint8Array, headers: ReadonlyMap<string, string>): StoredEvent {
  const stored = receiveStoredEvent(data, headers);
  void stored.event;
  return stored;
}

/** Ephemeral events carry only their route. */
export function ephemeralHeaders(route: { conversationId: string } | { userId: string }): Map<string, string> {
  return new Map("conversationId" in route ? [[CONVERSATION, route.conversationId]] : [[TARGET_USER, route.userId]]);
}

export function ephemeralRoute(headers: ReadonlyMap<string, string>): { conversationId: string } | { userId: string } | null {
  const conversationId = headers.get(CONVERSATION);
  const userId = headers.get(TARGET_USER);
  return conversationId ? { conversationId } : userId ? { userId } : null;
}
