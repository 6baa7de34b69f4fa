/**
 * Sealing key material for one device: a ToDevicePayload in a nacl.box from the sender
 * device's box key to the recipient's claimed one-time prekey, or to its box key when it has
 * no prekey left. The box authenticates the sender device, so the recipient only trusts a
 * payload after checking that device's box key against the directory.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { ToDevicePayloadSchema, type ToDevicePayload } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { DecryptError } from "./decrypt-error.ts";
import { boxOpen, boxSeal } from "./primitives.ts";

/** The construction's name, carried in ToDeviceMessage.algorithm. */
export const TO_DEVICE_ALGORITHM = "x25519-xsalsa20-poly1305";

/** Where a payload goes: the device's box key, and the prekey claimed for it if any. */
export interface ToDeviceRecipient {
  readonly boxPublicKey: Uint8Array;
  readonly prekey?: { readonly keyId: number; readonly publicKey: Uint8Array } | undefined;
}

/** What SendToDevice carries for one recipient (and ListToDeviceMessages gives back). */
export interface SealedToDevice {
  readonly ciphertext: Uint8Array;
  readonly nonce: Uint8Array;
  readonly algorithm: string;
  /** The recipient's prekey it was sealed to; 0 for its box key. */
  readonly prekeyId: number;
}

/** Seals a payload for one recipient device. */
export async function sealToDevice(payload: ToDevicePayload, senderBoxSecretKey: Uint8Array, recipient: ToDeviceRecipient): Promise<SealedToDevice> {
  const nonce = nacl.randomBytes(nacl.box.nonceLength);
  const recipientKey = recipient.prekey?.publicKey ?? recipient.boxPublicKey;
  const ciphertext = await boxSeal(toBinary(ToDevicePayloadSchema, payload), nonce, recipientKey, senderBoxSecretKey);
  return { ciphertext, nonce, algorithm: TO_DEVICE_ALGORITHM, prekeyId: recipient.prekey?.keyId ?? 0 };
}

/**
 * Opens a payload with the recipient's secret (the prekey's when prekeyId is set, else the
 * box key's) and the sender device's verified box public key.
 */
export async function openToDevice(sealed: SealedToDevice, senderBoxPublicKey: Uint8Array, recipientSecretKey: Uint8Array): Promise<ToDevicePayload> {
  if (sealed.algorithm !== TO_DEVICE_ALGORITHM) throw new DecryptError("malformed", `unknown to-device algorithm "${sealed.algorithm}"`);
  if (sealed.nonce.length !== nacl.box.nonceLength) throw new DecryptError("malformed", "to-device nonce has the wrong length");
  if (senderBoxPublicKey.length !== nacl.box.publicKeyLength) throw new DecryptError("malformed", "sender box key has the wrong length");
  const plaintext = await boxOpen(sealed.ciphertext, sealed.nonce, senderBoxPublicKey, recipientSecretKey);
  if (plaintext === null) throw new DecryptError("tampered", "to-device payload does not open with these keys");
  try {
    return fromBinary(ToDevicePayloadSchema, plaintext);
  } catch {
    throw new DecryptError("malformed", "to-device payload is not a ToDevicePayload");
  }
}
