/**
 * Turns stored messages into what the app shows: the text of a plain message, or the opened
 * envelope of an encrypted one. A message that cannot be opened is still handed over, with the
 * error, so one bad envelope never hides the rest of a conversation.
 */
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { MediaKey } from "../../gen/parley/e2e/v1/payload_pb.ts";
import type { MessageCodec } from "./codec.ts";

/** A message as the app sees it. */
export interface DecodedMessage {
  conversationId: string;
  seq: bigint;
  senderId: string;
  /** The text (decrypted for an encrypted conversation); "" for a tombstone or an unopened envelope. */
  text: string;
  /** Keys to encrypted media (encrypted conversations only). */
  media: MediaKey[];
  encrypted: boolean;
  deleted: boolean;
  /** Why an encrypted message could not be opened (a DecryptError from the codec, usually). */
  error?: unknown;
  /** The message as the server stored it. */
  message: Message;
}

export async function decodeMessage(conversation: Conversation | undefined, message: Message, codec: MessageCodec | undefined): Promise<DecodedMessage> {
  const base = {
    conversationId: message.conversationId,
    seq: message.seq,
    senderId: message.senderId,
    deleted: message.deletion !== undefined,
    message,
  };
  switch (message.content.case) {
    case "text":
      return { ...base, text: message.content.value, media: [], encrypted: false };
    case "envelope": {
      if (!codec || !conversation) {
        return { ...base, text: "", media: [], encrypted: true, error: new Error(codec ? "conversation unknown" : "this client has no codec to open encrypted messages") };
      }
      try {
        const plain = await codec.decrypt(conversation, message);
        return { ...base, text: plain.text, media: plain.media, encrypted: true };
      } catch (error) {
        return { ...base, text: "", media: [], encrypted: true, error };
      }
    }
    default:
      return { ...base, text: "", media: [], encrypted: conversation?.encrypted ?? false };
  }
}
