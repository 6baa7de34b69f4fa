/**
 * The seam between the session (outbox, feed, search) and end-to-end encryption: the session
 * hands encrypted conversations' content to a MessageCodec and never touches keys itself.
 */
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message, EncryptedEnvelope } from "../../gen/parley/v1/message_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { BlindQuery } from "../../gen/parley/v1/search_service_pb.ts";
import type { PlainContent } from "../../gen/parley/e2e/v1/payload_pb.ts";
/**
 * A codec's refusal that no retry can change (the conversation is not encrypted, the peer has
 * no device to encrypt to, key state the send needs is missing): the outbox marks the send
 * failed and tells the app, instead of retrying it, in strict order, for ever. Anything else a
 * codec throws from the network is retried as the call's own error says.
 */
export class CodecRefusedError extends Error {
  override readonly name = "CodecRefusedError";
}

/** SearchMessages takes at most this many blind queries in one call. */
export const MAX_BLIND_QUERIES_PER_CALL = 64;

/** What encrypts, decrypts and searches for the session; the SDK's is E2EKeyManager. */
export interface MessageCodec {
  /** Encrypts content for the conversation at its current key epoch (distributing keys first if needed). */
  encrypt(conversation: Conversation, content: PlainContent): Promise<{ envelope: EncryptedEnvelope; searchTokens: Uint8Array[] }>;
  /** Opens a stored message's envelope; throws DecryptError. */
  decrypt(conversation: Conversation, message: Message): Promise<PlainContent>;
  /** Blind queries for a search in the conversation (one per search key held). */
  blindQueries(conversation: Conversation, query: string): Promise<BlindQuery[]>;
  /** Feed events the codec cares about (device_changed, member_added, member_removed, to_device_message). */
  onEvent(event: Event): Promise<void>;
  /** Drains the device's to-device inbox (on start and after reconnect). */
  syncInbox(): Promise<void>;
}
