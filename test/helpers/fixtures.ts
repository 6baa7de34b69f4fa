/** Small builders shared by the integration tests. */
import { randomInt, randomUUID } from "node:crypto";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { ListDirection } from "../../gen/parley/v1/message_service_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { Clients } from "./test-server.ts";

/** Creates a group as the caller's clients with the other members; returns the conversation. */
export async function createGroup(
  clients: Clients,
  memberIds: readonly string[],
  name = "test group",
): Promise<Conversation> {
  const res = await clients.conversations.createConversation({
    type: ConversationType.GROUP,
    memberIds: [...memberIds],
    name,
  });
  if (!res.conversation) throw new Error("CreateConversation returned no conversation");
  return res.conversation;
}

/** Creates (or finds) the DIRECT conversation between the caller and the peer. */
export async function createDirect(clients: Clients, peerId: string): Promise<Conversation> {
  const res = await clients.conversations.createConversation({
    type: ConversationType.DIRECT,
    memberIds: [peerId],
  });
  if (!res.conversation) throw new Error("CreateConversation returned no conversation");
  return res.conversation;
}

/** Sends a text message with a fresh client_message_id; returns the stored message. */
export async function sendText(clients: Clients, conversationId: string, text: string): Promise<Message> {
  const res = await clients.messages.sendMessage({
    conversationId,
    clientMessageId: randomUUID(),
    content: { case: "text", value: text },
  });
  if (!res.message) throw new Error("SendMessage returned no message");
  return res.message;
}

/** Walks the whole history FORWARD with the given page size; returns every message. */
export async function listAllForward(clients: Clients, conversationId: string, pageSize = 200): Promise<Message[]> {
  const all: Message[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 10_000; pages++) {
    const res = await clients.messages.listMessages({
      conversationId,
      pageSize,
      pageToken,
      direction: ListDirection.FORWARD,
    });
    all.push(...res.messages);
    if (!res.nextPageToken) return all;
    pageToken = res.nextPageToken;
  }
  throw new Error("ListMessages never stopped returning a next_page_token");
}

/** Every conversation of the caller, following next_page_token. */
export async function listAllConversations(clients: Clients, pageSize = 100): Promise<Conversation[]> {
  const all: Conversation[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 10_000; pages++) {
    const res = await clients.conversations.listConversations({ pageSize, pageToken });
    all.push(...res.conversations);
    if (!res.nextPageToken) return all;
    pageToken = res.nextPageToken;
  }
  throw new Error("ListConversations never stopped returning a next_page_token");
}

export function ms(ts: Timestamp | undefined): number {
  if (!ts) throw new Error("timestamp missing");
  return timestampMs(ts);
}

/**
 * Waits until the wall clock is past the timestamp by a couple of milliseconds, so that the
 * next write gets a strictly later time. A precondition, never an assertion.
 */
export async function clockPast(ts: Timestamp | undefined): Promise<void> {
  const target = ms(ts) + 2;
  while (Date.now() <= target) {
    await new Promise((resolve) => setTimeout(resolve, target - Date.now() + 1));
  }
}

/**
 * A well-formed id that names no conversation, shaped like a real one: a fresh UUID when ids
 * are UUIDs, otherwise the real id with its last characters replaced by others of the same kind.
 */
export function absentIdLike(realId: string): string {
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(realId)) {
    const fresh = randomUUID();
    return realId === realId.toUpperCase() ? fresh.toUpperCase() : fresh;
  }
  const chars = [...realId];
  for (let i = Math.max(0, chars.length - 8); i < chars.length; i++) {
    const c = chars[i] ?? "";
    if (/[0-9]/.test(c)) chars[i] = String((Number(c) + 1 + randomInt(8)) % 10);
    else if (/[a-z]/.test(c)) chars[i] = String.fromCharCode(97 + ((c.charCodeAt(0) - 97 + 1 + randomInt(24)) % 26));
    else if (/[A-Z]/.test(c)) chars[i] = String.fromCharCode(65 + ((c.charCodeAt(0) - 65 + 1 + randomInt(24)) % 26));
  }
  return chars.join("");
}

/** Random bytes covering every byte value, including 0x00 and 0xff. */
export function everyByte(extra = 64): Uint8Array {
  const out = new Uint8Array(256 + extra);
  for (let i = 0; i < 256; i++) out[i] = i;
  for (let i = 256; i < out.length; i++) out[i] = randomInt(256);
  return out;
}
