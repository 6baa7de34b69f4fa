/** Sending, editing and reading messages the way the lifecycle tests need them. */
import { randomUUID } from "node:crypto";
import type { Message } from "../../../gen/parley/v1/message_pb.ts";
import type { Clients } from "../../helpers/test-server.ts";
import type { EnvelopeInit } from "./sealed.ts";

export interface SendOptions {
  /** Plain text, or an envelope for an encrypted conversation. */
  body: string | EnvelopeInit;
  replyToSeq?: bigint;
  mentionUserIds?: string[];
  mentionEveryone?: boolean;
  clientMessageId?: string;
}

function content(body: string | EnvelopeInit) {
  return typeof body === "string" ? { case: "text" as const, value: body } : { case: "envelope" as const, value: body };
}

/** Sends a message with a fresh client_message_id (unless given); returns the stored message. */
export async function send(clients: Clients, conversationId: string, options: SendOptions): Promise<Message> {
  const res = await clients.messages.sendMessage({
    conversationId,
    clientMessageId: options.clientMessageId ?? randomUUID(),
    content: content(options.body),
    replyToSeq: options.replyToSeq,
    mentionUserIds: options.mentionUserIds ?? [],
    mentionEveryone: options.mentionEveryone ?? false,
  });
  if (!res.message) throw new Error("SendMessage returned no message");
  return res.message;
}

/** Replaces the content of the message at seq; returns the message after the edit. */
export async function edit(clients: Clients, conversationId: string, seq: bigint, body: string | EnvelopeInit): Promise<Message> {
  const res = await clients.messages.editMessage({ conversationId, seq, content: content(body) });
  if (!res.message) throw new Error("EditMessage returned no message");
  return res.message;
}

/** Deletes the message at seq; returns the tombstone. */
export async function remove(clients: Clients, conversationId: string, seq: bigint): Promise<Message> {
  const res = await clients.messages.deleteMessage({ conversationId, seq });
  if (!res.message) throw new Error("DeleteMessage returned no message");
  return res.message;
}

export async function getMessage(clients: Clients, conversationId: string, seq: bigint): Promise<Message> {
  const res = await clients.messages.getMessage({ conversationId, seq });
  if (!res.message) throw new Error("GetMessage returned no message");
  return res.message;
}

/** The text of a message, or "" when it has none (encrypted or deleted). */
export function textOf(m: Pick<Message, "content"> | undefined): string {
  return m?.content.case === "text" ? m.content.value : "";
}
