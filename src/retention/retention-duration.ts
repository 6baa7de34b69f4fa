/** Retentions on the wire (google.protobuf.Duration) and back. */
import { durationFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { MAX_RETENTION_DAYS } from "../config.ts";
import { InvalidInputError } from "../errors.ts";

/** The shortest retention a conversation can set. */
export const MIN_RETENTION_SECONDS = 60;
/** The longest: as long as a deployment's can be. */
export const MAX_RETENTION_SECONDS = MAX_RETENTION_DAYS * 24 * 3600;

/**
 * A requested retention in whole seconds, or null for zero (clear it). Anything else than whole
 * seconds from MIN_RETENTION_SECONDS to MAX_RETENTION_SECONDS is INVALID_ARGUMENT naming the field.
 */
export function parseRetention(field: string, value: Duration): number | null {
  if (value.seconds === 0n && value.nanos === 0) return null;
  if (value.seconds < 0n || value.nanos < 0 || value.nanos > 999_999_999) throw new InvalidInputError(field, "must not be negative");
  if (value.nanos !== 0) throw new InvalidInputError(field, "must be whole seconds");
  if (value.seconds < BigInt(MIN_RETENTION_SECONDS)) {
    throw new InvalidInputError(field, `must be at least ${MIN_RETENTION_SECONDS} seconds, or zero to clear it`);
  }
  if (value.seconds > BigInt(MAX_RETENTION_SECONDS)) throw new InvalidInputError(field, `must be at most ${MAX_RETENTION_SECONDS} seconds (${MAX_RETENTION_DAYS} days)`);
  return Number(value.seconds);
}

/** A stored retention in seconds as a Duration, or undefined (unset) when there is none. */
export function toRetentionDuration(seconds: string | number | null): Duration | undefined {
  return seconds === null ? undefined : durationFromMs(Number(seconds) * 1000);
}
