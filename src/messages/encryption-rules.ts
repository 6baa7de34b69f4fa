/**
 * What end-to-end encryption asks of a write into a conversation: encrypted conversations take
 * envelopes only, sealed for the conversation's current key epoch, and blind-index tokens go
 * only where blind search was turned on. Sends and edits check the same rules, under the
 * conversation's lock, so a removal that moves the epoch on cannot slip in between.
 */
import { FailedPreconditionError, InvalidInputError } from "../errors.ts";
import type { MessageContent } from "./message-content.ts";

const MIN_TOKEN_BYTES = 8;
const MAX_TOKEN_BYTES = 32;
const MAX_TOKENS = 256;

/** The encryption settings of a conversation, as read under its lock. */
export interface ConversationEncryption {
  encrypted: boolean;
  blindSearch: boolean;
  keyEpoch: number;
}

/** Checks each token's size and count; duplicates count once. */
export function parseSearchTokens(tokens: readonly Uint8Array[]): Uint8Array[] {
  if (tokens.length > MAX_TOKENS) throw new InvalidInputError("search_tokens", `has ${tokens.length} tokens; at most ${MAX_TOKENS}`);
  const unique = new Map<string, Uint8Array>();
  tokens.forEach((token, i) => {
    if (token.length < MIN_TOKEN_BYTES || token.length > MAX_TOKEN_BYTES) {
      throw new InvalidInputError(`search_tokens[${i}]`, `must be ${MIN_TOKEN_BYTES} to ${MAX_TOKEN_BYTES} bytes`);
    }
    unique.set(Buffer.from(token).toString("base64"), token);
  });
  return [...unique.values()];
}

/** Why this content (with these tokens) may not be written to the conversation, or null. */
export function encryptionViolation(conversation: ConversationEncryption, content: MessageContent, searchTokens: readonly Uint8Array[]): Error | null {
  if (conversation.encrypted && content.kind === "text") {
    return new InvalidInputError("text", "the conversation is end-to-end encrypted: send an envelope");
  }
  if (searchTokens.length > 0 && !conversation.blindSearch) {
    return new InvalidInputError("search_tokens", "are only for encrypted conversations with blind search");
  }
  if (conversation.encrypted && content.kind === "envelope" && content.envelope.keyEpoch !== conversation.keyEpoch) {
    return new FailedPreconditionError(
      `the envelope is sealed for key epoch ${content.envelope.keyEpoch}; the conversation is at ${conversation.keyEpoch}: replace the keys and encrypt again`,
      "STALE_KEY_EPOCH",
    );
  }
  return null;
}
