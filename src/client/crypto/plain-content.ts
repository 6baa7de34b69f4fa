/**
 * The secretbox layer both envelope kinds share: PlainContent sealed under a 32-byte key.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { PlainContentSchema, type PlainContent } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { DecryptError } from "./decrypt-error.ts";

/** Seals content under a message key with the envelope's nonce. */
export function sealContent(content: PlainContent, nonce: Uint8Array, messageKey: Uint8Array): Uint8Array {
  return nacl.secretbox(toBinary(PlainContentSchema, content), nonce, messageKey);
}

/** Opens a body sealed by sealContent; a body that fails authentication is "tampered". */
export function openContent(body: Uint8Array, nonce: Uint8Array, messageKey: Uint8Array): PlainContent {
  if (nonce.length !== nacl.secretbox.nonceLength) throw new DecryptError("malformed", "envelope nonce has the wrong length");
  if (messageKey.length !== nacl.secretbox.keyLength) throw new DecryptError("malformed", "message key has the wrong length");
  const plaintext = nacl.secretbox.open(body, nonce, messageKey);
  if (plaintext === null) throw new DecryptError("tampered", "message body does not open with its key");
  try {
    return fromBinary(PlainContentSchema, plaintext);
  } catch {
    throw new DecryptError("malformed", "message body is not a PlainContent");
  }
}
