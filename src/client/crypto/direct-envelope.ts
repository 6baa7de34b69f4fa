/**
 * DIRECT (1:1) envelopes, "parley-direct-v1": the body sealed under a fresh message key, and
 * that key nacl.box'ed to each device that may read it (the peer's devices and the sender's
 * devices, the sending one included so it can reread its own messages from the envelope). One
 * key per message means a key leaked or re-shared opens one message. The body's key is derived
 * from the message key and the conversation and key epoch the message was sealed for, so an
 * envelope moved into another conversation (or shown at another epoch) does not open.
 *
 * Opening is split in steps because the key can come from two places: the envelope's own
 * key box for this device, or a MessageKeyShare the sender answered a key request with.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { DirectCiphertextSchema, KeyBoxSchema, type DirectCiphertext, type PlainContent } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { EncryptedEnvelopeSchema, type EncryptedEnvelope } from "../../../gen/parley/v1/message_pb.ts";
import { concatBytes, lengthPrefixed, uint32, utf8 } from "./bytes.ts";
import { DecryptError } from "./decrypt-error.ts";
import { openContent, sealContent } from "./plain-content.ts";
import { boxOpen, boxSeal } from "./primitives.ts";

/** The construction's name, carried in EncryptedEnvelope.algorithm. */
export const DIRECT_ALGORITHM = "parley-direct-v1";

/** A device the message key is boxed to. */
export interface KeyBoxRecipient {
  readonly deviceId: string;
  readonly boxPublicKey: Uint8Array;
}

/** What sealing a direct message needs. */
export interface SealDirectInput {
  readonly content: PlainContent;
  readonly conversationId: string;
  readonly senderDeviceId: string;
  readonly senderBoxSecretKey: Uint8Array;
  /** Every device of the peer and of the sender, the sending device included. */
  readonly recipients: readonly KeyBoxRecipient[];
  readonly keyEpoch: number;
}

/** The envelope, and its message key (kept by the sender to answer key requests). */
export interface SealedDirect {
  readonly envelope: EncryptedEnvelope;
  readonly messageKey: Uint8Array;
}

/** Seals a direct message for its recipients' devices. */
export async function sealDirect(input: SealDirectInput): Promise<SealedDirect> {
  const messageKey = nacl.randomBytes(nacl.secretbox.keyLength);
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const keyBoxes = await Promise.all(
    input.recipients.map(async (recipient) => {
      const boxNonce = nacl.randomBytes(nacl.box.nonceLength);
      return create(KeyBoxSchema, {
        deviceId: recipient.deviceId,
        nonce: boxNonce,
        boxedKey: await boxSeal(messageKey, boxNonce, recipient.boxPublicKey, input.senderBoxSecretKey),
      });
    }),
  );
  const ciphertext = create(DirectCiphertextSchema, {
    senderDeviceId: input.senderDeviceId,
    keyBoxes,
    body: sealContent(input.content, nonce, bodyKey(messageKey, input.conversationId, input.keyEpoch)),
  });
  const envelope = create(EncryptedEnvelopeSchema, {
    ciphertext: toBinary(DirectCiphertextSchema, ciphertext),
    nonce,
    algorithm: DIRECT_ALGORITHM,
    keyId: input.senderDeviceId,
    keyEpoch: input.keyEpoch,
  });
  return { envelope, messageKey };
}

/**
 * Decodes a direct envelope's ciphertext and checks its header: the receiver needs the
 * sender device id to look up the box key before anything can be opened.
 */
export function readDirectCiphertext(envelope: EncryptedEnvelope): DirectCiphertext {
  if (envelope.algorithm !== DIRECT_ALGORITHM) throw new DecryptError("malformed", `not a ${DIRECT_ALGORITHM} envelope`);
  let ciphertext: DirectCiphertext;
  try {
    ciphertext = fromBinary(DirectCiphertextSchema, envelope.ciphertext);
  } catch {
    throw new DecryptError("malformed", "envelope ciphertext is not a DirectCiphertext");
  }
  if (ciphertext.senderDeviceId === "" || ciphertext.senderDeviceId !== envelope.keyId) {
    throw new DecryptError("tampered", "envelope key id does not name the sender device");
  }
  return ciphertext;
}

/** Opens this device's key box; throws not_for_this_device when the sender boxed none to it. */
export async function openDirectMessageKey(
  ciphertext: DirectCiphertext,
  recipient: { readonly deviceId: string; readonly boxSecretKey: Uint8Array },
  senderBoxPublicKey: Uint8Array,
): Promise<Uint8Array> {
  const keyBox = ciphertext.keyBoxes.find((candidate) => candidate.deviceId === recipient.deviceId);
  if (keyBox === undefined) throw new DecryptError("not_for_this_device", "the message key was not boxed to this device");
  if (keyBox.nonce.length !== nacl.box.nonceLength) throw new DecryptError("malformed", "key box nonce has the wrong length");
  if (senderBoxPublicKey.length !== nacl.box.publicKeyLength) throw new DecryptError("malformed", "sender box key has the wrong length");
  const messageKey = await boxOpen(keyBox.boxedKey, keyBox.nonce, senderBoxPublicKey, recipient.boxSecretKey);
  if (messageKey === null) throw new DecryptError("tampered", "key box does not open with the sender device's key");
  return messageKey;
}

/**
 * Opens the body with a message key from a key box or a MessageKeyShare, for the conversation
 * it is read in: sealed for another one (or another epoch), it is "tampered".
 */
export function openDirectBody(envelope: EncryptedEnvelope, ciphertext: DirectCiphertext, messageKey: Uint8Array, conversationId: string): PlainContent {
  if (messageKey.length !== nacl.secretbox.keyLength) throw new DecryptError("malformed", "message key has the wrong length");
  return openContent(ciphertext.body, envelope.nonce, bodyKey(messageKey, conversationId, envelope.keyEpoch));
}

/** The body's secretbox key: the message key bound to the conversation and key epoch. */
function bodyKey(messageKey: Uint8Array, conversationId: string, keyEpoch: number): Uint8Array {
  return nacl.hash(concatBytes(utf8(`${DIRECT_ALGORITHM} body`), lengthPrefixed(utf8(conversationId)), uint32(keyEpoch), messageKey)).slice(0, nacl.secretbox.keyLength);
}
