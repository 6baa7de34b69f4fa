/**
 * Domain errors thrown by services, and the one place that maps them to Connect codes.
 * Anything that is not a domain error becomes INTERNAL with a generic message; the real
 * cause is logged by the caller of toConnectError, never sent to the client.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, BadRequest_FieldViolationSchema, ErrorInfoSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb.ts";

const DOMAIN = "parley.dev";

/** An error detail beyond ErrorInfo and BadRequest: any protobuf message and its schema. */
export type ErrorDetail = NonNullable<ConstructorParameters<typeof ConnectError>[3]>[number];

/** Base class: a failure the caller can act on, with a message safe to show them. */
export abstract class DomainError extends Error {
  abstract readonly code: Code;
  /** Machine-readable reason sent as google.rpc.ErrorInfo. */
  readonly reason: string;
  /** Sent as ErrorInfo's metadata (e.g. when a suspension ends). */
  readonly metadata: Record<string, string>;
  /** Further details a client can decode. */
  readonly details: readonly ErrorDetail[];
  constructor(message: string, reason: string, metadata: Record<string, string> = {}, details: readonly ErrorDetail[] = []) {
    super(message);
    this.reason = reason;
    this.metadata = metadata;
    this.details = details;
  }
}

/** One field of the request is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** The request is malformed: INVALID_ARGUMENT with google.rpc.BadRequest details. */
export class InvalidInputError extends DomainError {
  readonly code = Code.InvalidArgument;
  readonly violations: FieldViolation[];
  constructor(field: string, description: string);
  constructor(violations: FieldViolation[]);
  constructor(fieldOrViolations: string | FieldViolation[], description?: string) {
    const violations =
      typeof fieldOrViolations === "string"
        ? [{ field: fieldOrViolations, description: description ?? "is invalid" }]
        : fieldOrViolations;
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "), "INVALID_ARGUMENT");
    this.violations = violations;
  }
}

/** The thing does not exist, or the caller may not know that it does. */
export class NotFoundError extends DomainError {
  readonly code = Code.NotFound;
  constructor(what: string) {
    super(`${what} not found`, "NOT_FOUND");
  }
}

/** The caller can see the thing but may not do this to it. */
export class PermissionDeniedError extends DomainError {
  readonly code = Code.PermissionDenied;
  constructor(message: string, reason = "PERMISSION_DENIED", metadata: Record<string, string> = {}, details: readonly ErrorDetail[] = []) {
    super(message, reason, metadata, details);
  }
}

/** The request is valid but the current state does not allow it. */
export class FailedPreconditionError extends DomainError {
  readonly code = Code.FailedPrecondition;
  constructor(message: string, reason: string) {
    super(message, reason);
  }
}

/** The thing the caller tries to create is already there, and not theirs to reuse. */
export class AlreadyExistsError extends DomainError {
  readonly code = Code.AlreadyExists;
  constructor(message: string, reason = "ALREADY_EXISTS") {
    super(message, reason);
  }
}

/** The caller reached a limit on how many of something they may have. */
export class ResourceExhaustedError extends DomainError {
  readonly code = Code.ResourceExhausted;
  constructor(message: string, reason: string, metadata: Record<string, string> = {}, details: readonly ErrorDetail[] = []) {
    super(message, reason, metadata, details);
  }
}

/**
 * A rate limit refused the call: RESOURCE_EXHAUSTED with google.rpc.RetryInfo (when a token is
 * next available) and ErrorInfo reason RATE_LIMITED, whose metadata names the bucket ("user"
 * or "ip") and what it limits ("writes" or "auth_failures").
 */
export class RateLimitedError extends ResourceExhaustedError {
  readonly bucket: "user" | "ip";
  readonly limits: "writes" | "auth_failures";
  /** How long until the call would be admitted, in milliseconds. */
  readonly retryAfterMs: number;
  constructor(bucket: "user" | "ip", limits: "writes" | "auth_failures", retryAfterMs: number) {
    const what = limits === "writes" ? "writes" : "failed sign-ins";
    // Rounded up: a client that waits exactly this long finds a token.
    const retryDelay = durationFromMs(Math.ceil(retryAfterMs));
    super(`too many ${what} from this ${bucket === "user" ? "account" : "address"}; retry in ${Math.ceil(retryAfterMs)} ms`, "RATE_LIMITED", { bucket, limits }, [
      { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay }) },
    ]);
    this.bucket = bucket;
    this.limits = limits;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A dependency the call needs is down and the deployment chose not to serve without it. */
export class UnavailableError extends DomainError {
  readonly code = Code.Unavailable;
  constructor(message: string, reason: string) {
    super(message, reason);
  }
}

/** The token is missing or not valid. */
export class UnauthenticatedError extends DomainError {
  readonly code = Code.Unauthenticated;
  constructor(message = "a valid bearer token is required") {
    super(message, "UNAUTHENTICATED");
  }
}

/** Maps any thrown value to a ConnectError that is safe to send. */
export function toConnectError(error: unknown): { error: ConnectError; expected: boolean } {
  if (error instanceof ConnectError) return { error, expected: error.code !== Code.Internal && error.code !== Code.Unknown };
  if (error instanceof DomainError) {
    const details: ErrorDetail[] = [
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: error.reason, domain: DOMAIN, metadata: error.metadata }) },
      ...error.details,
    ];
    if (error instanceof InvalidInputError) {
      details.push({
        desc: BadRequestSchema,
        value: create(BadRequestSchema, {
          fieldViolations: error.violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
        }),
      });
    }
    return { error: new ConnectError(error.message, error.code, undefined, details), expected: true };
  }
  return { error: new ConnectError("internal error", Code.Internal), expected: false };
}
