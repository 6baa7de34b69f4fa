/**
 * End-to-end encryption as a client does it, with tweetnacl: a conversation key shared by the
 * members' devices, each message sealed with secretbox under a fresh nonce. The server only
 * ever sees the envelope.
 */
import { randomUUID } from "node:crypto";
import nacl from "tweetnacl";
import type { EncryptedEnvelope } from "../../../gen/parley/v1/message_pb.ts";

export const SEALED_ALGORITHM = "xsalsa20-poly1305";

/** A conversation key the members' clients agreed on (the server never sees it). */
export interface ConversationKey {
  readonly id: string;
  readonly epoch: number;
  readonly secret: Uint8Array;
}

export function newConversationKey(epoch = 1): ConversationKey {
  return { id: `key-${randomUUID()}`, epoch, secret: nacl.randomBytes(nacl.secretbox.keyLength) };
}

/** The envelope fields of a SendMessage/EditMessage content oneof. */
export type EnvelopeInit = Omit<EncryptedEnvelope, "$typeName" | "$unknown">;

export function seal(key: ConversationKey, text: string): EnvelopeInit {
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const ciphertext = nacl.secretbox(new TextEncoder().encode(text), nonce, key.secret);
  return { ciphertext, nonce, algorithm: SEALED_ALGORITHM, keyId: key.id, keyEpoch: key.epoch };
}

/** Opens an envelope that came back from the server; throws when it does not open. */
export function open(key: ConversationKey, envelope: EnvelopeInit | undefined): string {
  if (!envelope) throw new Error("no envelope");
  const plain = nacl.secretbox.open(envelope.ciphertext, envelope.nonce, key.secret);
  if (!plain) throw new Error("the envelope does not open with the conversation key (altered by the server?)");
  return new TextDecoder().decode(plain);
}
