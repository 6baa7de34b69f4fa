/**
 * How the session layer reads a failed call: whether trying again can help. Kept in one place
 * so the outbox, the feed and edits agree on what "transient" means.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { AccountRestrictionSchema, type AccountRestriction } from "../../gen/parley/v1/moderation_pb.ts";
import { CodecRefusedError } from "./codec.ts";

/** The ErrorInfo reason the server gives an encrypted send or edit made under an old key epoch. */
export const STALE_KEY_EPOCH = "STALE_KEY_EPOCH";

/**
 * - "retry": the server may not have seen the call, or could not serve it now (network, restart,
 *   overload); the same request may be sent again.
 * - "stale_epoch": the conversation's key epoch moved on; re-read it and encrypt again.
 * - "permanent": the request itself is wrong or not allowed; sending it again cannot succeed.
 */
export type FailureKind = "retry" | "stale_epoch" | "permanent";

/** Codes where the same request cannot succeed later. Everything else is worth another try. */
const PERMANENT_CODES = new Set<Code>([
  Code.InvalidArgument,
  Code.NotFound,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.AlreadyExists,
  Code.OutOfRange,
  Code.Unimplemented,
]);

/** Classifies any error thrown by a generated client call (or by a codec calling the server). */
export function classifyFailure(err: unknown): FailureKind {
  // Anything that is not a ConnectError at all (a TypeError from fetch on a dropped network)
  // is a network failure: connect normally wraps those, but a custom transport may not.
  if (!(err instanceof ConnectError)) return isProgrammingError(err) ? "permanent" : "retry";
  if (err.code === Code.FailedPrecondition && errorReason(err) === STALE_KEY_EPOCH) return "stale_epoch";
  return PERMANENT_CODES.has(err.code) ? "permanent" : "retry";
}

/** The google.rpc.ErrorInfo reason the server attached, or "" when there is none. */
export function errorReason(err: ConnectError): string {
  return err.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/** The suspension or ban a PERMISSION_DENIED names, when the caller's account is restricted. */
export function accountRestrictionOf(err: unknown): AccountRestriction | undefined {
  if (!(err instanceof ConnectError) || err.code !== Code.PermissionDenied) return undefined;
  return err.findDetails(AccountRestrictionSchema)[0];
}

/** Bugs (and codec errors such as DecryptError) must surface, not loop in a retry forever. */
function isProgrammingError(err: unknown): boolean {
  if (err instanceof TypeError) return !/fetch|network|socket|connect/i.test(err.message);
  if (err instanceof CodecRefusedError) return true;
  return err instanceof RangeError || err instanceof SyntaxError || (err instanceof Error && err.name === "DecryptError");
}

/** A short human text for an error, for the failed outbox entries the app shows. */
export function describeFailure(err: unknown): string {
  if (err instanceof ConnectError) return `${Code[err.code] ?? err.code}: ${err.rawMessage}`;
  return err instanceof Error ? err.message : String(err);
}
