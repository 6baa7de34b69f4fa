/**
 * What end-to-end encryption asks of a write into a conversation: encrypted conversations take
 * envelopes only, sealed for the conversation's current key epoch, and blind-index tokens go
 * only where blind search was turned on. Sends and edits check the same rules, under the
 * conversation's lock, so a removal that moves the epoch on cannot slip in between.
 */
import { FailedPreconditionError, InvalidInputError } from "../errors.ts";
import { parseBlindTokens } from "../search/blind-tokens.ts";
import type { MessageContent } from "./message-content.ts";

/** Search tokens one message may carry: one per distinct word, as many as the SDK makes. */
const MAX_TOKENS = 256;

/** The encryption settings of a conversation, as read under its lock. */
export interface ConversationEncryption {
  encrypted: boolean;
  blindSearch: boolean;
  keyEpoch: number;
}

/** A send's or edit's search tokens, checked (none is fine). */
export function parseSearchTokens(tokens: readonly Uint8Array[]): Uint8Array[] {
  return parseBlindTokens("search_tokens", tokens, { min: 0, max: MAX_TOKENS });
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
