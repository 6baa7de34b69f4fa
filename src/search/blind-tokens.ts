/** Blind-index tokens as clients send them: checked once here for sends, edits and searches. */
import { InvalidInputError } from "../errors.ts";

const MIN_TOKEN_BYTES = 8;
const MAX_TOKEN_BYTES = 32;

/**
 * Checks the tokens' sizes and count (`min` to `max`); duplicates count once. The server
 * never learns what a token stands for, only that two are equal.
 */
export function parseBlindTokens(field: string, tokens: readonly Uint8Array[], { min, max }: { min: number; max: number }): Uint8Array[] {
  if (tokens.length < min || tokens.length > max) throw new InvalidInputError(field, `must hold ${min} to ${max} tokens, not ${tokens.length}`);
  const unique = new Map<string, Uint8Array>();
  tokens.forEach((token, i) => {
    if (token.length < MIN_TOKEN_BYTES || token.length > MAX_TOKEN_BYTES) {
      throw new InvalidInputError(`${field}[${i}]`, `must be ${MIN_TOKEN_BYTES} to ${MAX_TOKEN_BYTES} bytes`);
    }
    unique.set(Buffer.from(token).toString("base64"), token);
  });
  return [...unique.values()];
}
