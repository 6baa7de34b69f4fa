/**
 * Why an envelope or to-device payload could not be opened. Callers branch on the reason
 * (ask for a key, refresh the conversation, show "message tampered"), so every failure to
 * open is one of these and never a bare exception.
 */
export type DecryptErrorReason =
  | "tampered"
  | "replayed"
  | "unknown_key"
  | "bad_signature"
  | "not_for_this_device"
  | "malformed"
  | "stale_epoch";

/** The one error every decrypt path throws. */
export class DecryptError extends Error {
  override readonly name = "DecryptError";
  readonly reason: DecryptErrorReason;

  constructor(reason: DecryptErrorReason, message: string) {
    super(`${reason}: ${message}`);
    this.reason = reason;
  }
}
