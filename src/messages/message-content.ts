/** A message body: its types, and the validation shared by SendMessage and EditMessage. */
import type { EncryptedEnvelope } from "../../gen/parley/v1/message_pb.ts";
import type { Limits } from "../config.ts";
import { InvalidInputError } from "../errors.ts";

export interface EnvelopeContent {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  algorithm: string;
  keyId: string;
  keyEpoch: number;
}

/** A validated body: text, or an envelope the server never opens. */
export type MessageContent = { kind: "text"; text: string } | { kind: "envelope"; envelope: EnvelopeContent };

const MAX_NONCE_BYTES = 64;
const MAX_ALGORITHM_CHARS = 64;
const MAX_KEY_ID_CHARS = 128;

/** The request's content oneof, as both requests declare it. */
export type ContentInput = { case: "text"; value: string } | { case: "envelope"; value: EncryptedEnvelope } | { case: undefined; value?: undefined };

export function parseContent(content: ContentInput, limits: Limits): MessageContent {
  switch (content.case) {
    case "text": {
      if (content.value.trim() === "") throw new InvalidInputError("text", "must not be blank");
      const bytes = Buffer.byteLength(content.value, "utf8");
      if (bytes > limits.maxMessageBytes) throw new InvalidInputError("text", `is ${bytes} bytes; the limit is ${limits.maxMessageBytes}`);
      return { kind: "text", text: content.value };
    }
    case "envelope": {
      const envelope = content.value;
      if (envelope.ciphertext.length === 0) throw new InvalidInputError("envelope.ciphertext", "must not be empty");
      if (envelope.ciphertext.length > limits.maxEnvelopeBytes) {
        throw new InvalidInputError("envelope.ciphertext", `is ${envelope.ciphertext.length} bytes; the limit is ${limits.maxEnvelopeBytes}`);
      }
      if (envelope.nonce.length > MAX_NONCE_BYTES) throw new InvalidInputError("envelope.nonce", `is longer than ${MAX_NONCE_BYTES} bytes`);
      if (envelope.algorithm === "" || envelope.algorithm.length > MAX_ALGORITHM_CHARS) {
        throw new InvalidInputError("envelope.algorithm", `must be 1 to ${MAX_ALGORITHM_CHARS} characters`);
      }
      if (envelope.keyId.length > MAX_KEY_ID_CHARS) throw new InvalidInputError("envelope.key_id", `is longer than ${MAX_KEY_ID_CHARS} characters`);
      return {
        kind: "envelope",
        envelope: {
          ciphertext: envelope.ciphertext,
          nonce: envelope.nonce,
          algorithm: envelope.algorithm,
          keyId: envelope.keyId,
          keyEpoch: envelope.keyEpoch,
        },
      };
    }
    default:
      throw new InvalidInputError("content", "one of text or envelope is required");
  }
}

/** The columns a body is stored in (text, or the envelope's parts). */
export function contentColumns(content: MessageContent) {
  const envelope = content.kind === "envelope" ? content.envelope : null;
  return {
    body_text: content.kind === "text" ? content.text : null,
    envelope_ciphertext: envelope?.ciphertext ?? null,
    envelope_nonce: envelope?.nonce ?? null,
    envelope_algorithm: envelope?.algorithm ?? null,
    envelope_key_id: envelope?.keyId ?? null,
    envelope_key_epoch: envelope?.keyEpoch ?? null,
  };
}
