/**
 * GROUP envelopes, "parley-sender-key-v1": the body sealed with the sender key's current
 * message key, and the header and body signed with the sending device's Ed25519 key. Every
 * member holds the chain key, so without the signature any member could write as another.
 *
 * Opening goes in steps so that the caller can look up the sender's chain between them and
 * commit the advanced chain only after the body opened.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { GroupCiphertextSchema, type GroupCiphertext, type PlainContent } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { EncryptedEnvelopeSchema, type EncryptedEnvelope } from "../../../gen/parley/v1/message_pb.ts";
import { concatBytes, lengthPrefixed, uint32, utf8 } from "./bytes.ts";
import { DecryptError } from "./decrypt-error.ts";
import { openContent, sealContent } from "./plain-content.ts";
import { signDetached, verifyDetached } from "./primitives.ts";
import { advanceSenderKey, messageKeyOf, takeMessageKey, type ReceiverChain, type SenderKey } from "./sender-key-chain.ts";

/** The construction's name, carried in EncryptedEnvelope.algorithm. */
export const GROUP_ALGORITHM = "parley-sender-key-v1";

/** What sealing a group message needs. */
export interface SealGroupInput {
  readonly content: PlainContent;
  readonly conversationId: string;
  readonly keyEpoch: number;
  readonly senderDeviceId: string;
  readonly signingSecretKey: Uint8Array;
  readonly senderKey: SenderKey;
}

/** The envelope, and the sender key to persist for the next message. */
export interface SealedGroup {
  readonly envelope: EncryptedEnvelope;
  readonly nextSenderKey: SenderKey;
}

/** Seals a group message with the sender key's current link. */
export async function sealGroup(input: SealGroupInput): Promise<SealedGroup> {
  const { senderKey } = input;
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const body = sealContent(input.content, nonce, messageKeyOf(senderKey.chainKey));
  const header = { conversationId: input.conversationId, keyEpoch: input.keyEpoch, senderKeyId: senderKey.id, index: senderKey.index, nonce };
  const ciphertext = create(GroupCiphertextSchema, {
    senderDeviceId: input.senderDeviceId,
    senderKeyId: senderKey.id,
    index: senderKey.index,
    body,
    signature: await signDetached(signedBytes(header, body), input.signingSecretKey),
  });
  const envelope = create(EncryptedEnvelopeSchema, {
    ciphertext: toBinary(GroupCiphertextSchema, ciphertext),
    nonce,
    algorithm: GROUP_ALGORITHM,
    keyId: senderKey.id,
    keyEpoch: input.keyEpoch,
  });
  return { envelope, nextSenderKey: advanceSenderKey(senderKey) };
}

/** Decodes a group envelope's ciphertext: it names the sender device and key to look up. */
export function readGroupCiphertext(envelope: EncryptedEnvelope): GroupCiphertext {
  if (envelope.algorithm !== GROUP_ALGORITHM) throw new DecryptError("malformed", `not a ${GROUP_ALGORITHM} envelope`);
  let ciphertext: GroupCiphertext;
  try {
    ciphertext = fromBinary(GroupCiphertextSchema, envelope.ciphertext);
  } catch {
    throw new DecryptError("malformed", "envelope ciphertext is not a GroupCiphertext");
  }
  if (ciphertext.senderDeviceId === "" || ciphertext.senderKeyId === "") throw new DecryptError("malformed", "group ciphertext names no sender");
  if (ciphertext.senderKeyId !== envelope.keyId) throw new DecryptError("tampered", "envelope key id does not name the sender key");
  return ciphertext;
}

/** The opened content, its message key, and the receiver chain to persist now that it opened. */
export interface OpenedGroup {
  readonly content: PlainContent;
  readonly messageKey: Uint8Array;
  readonly nextChain: ReceiverChain;
}

/**
 * Verifies the sender device's signature, takes the index's message key from the chain and
 * opens the body. The signature is checked first, so a forged envelope never moves the chain.
 */
export async function openGroup(
  envelope: EncryptedEnvelope,
  ciphertext: GroupCiphertext,
  conversationId: string,
  chain: ReceiverChain,
  senderSigningPublicKey: Uint8Array,
): Promise<OpenedGroup> {
  await verifyGroupSignature(envelope, ciphertext, conversationId, senderSigningPublicKey);
  const taken = takeMessageKey(chain, ciphertext.index);
  return { content: openContent(ciphertext.body, envelope.nonce, taken.messageKey), messageKey: taken.messageKey, nextChain: taken.next };
}

/**
 * Opens a group message with a message key already taken from the chain: the same stored
 * message read again (the chain would call it a replay) or a device's own message.
 */
export async function openGroupWithMessageKey(
  envelope: EncryptedEnvelope,
  ciphertext: GroupCiphertext,
  conversationId: string,
  messageKey: Uint8Array,
  senderSigningPublicKey: Uint8Array,
): Promise<PlainContent> {
  await verifyGroupSignature(envelope, ciphertext, conversationId, senderSigningPublicKey);
  return openContent(ciphertext.body, envelope.nonce, messageKey);
}

/** Throws bad_signature unless the sender device signed this header and body. */
async function verifyGroupSignature(envelope: EncryptedEnvelope, ciphertext: GroupCiphertext, conversationId: string, senderSigningPublicKey: Uint8Array): Promise<void> {
  const header = { conversationId, keyEpoch: envelope.keyEpoch, senderKeyId: ciphertext.senderKeyId, index: ciphertext.index, nonce: envelope.nonce };
  const signed = signedBytes(header, ciphertext.body);
  if (!(await verifyDetached(signed, ciphertext.signature, senderSigningPublicKey))) {
    throw new DecryptError("bad_signature", "the sender device's signature does not verify");
  }
}

interface GroupHeader {
  readonly conversationId: string;
  readonly keyEpoch: number;
  readonly senderKeyId: string;
  readonly index: number;
  readonly nonce: Uint8Array;
}

/** conversation id, epoch, sender key id, index, nonce, body; variable fields length-prefixed. */
function signedBytes(header: GroupHeader, body: Uint8Array): Uint8Array {
  return concatBytes(
    lengthPrefixed(utf8(header.conversationId)),
    uint32(header.keyEpoch),
    lengthPrefixed(utf8(header.senderKeyId)),
    uint32(header.index),
    lengthPrefixed(header.nonce),
    body,
  );
}
