/**
 * Input checks shared by every service. Each failure is an InvalidInputError naming the
 * field, so clients get google.rpc.BadRequest details they can act on.
 */
import { InvalidInputError } from "./errors.ts";
import { MAX_USER_ID_LENGTH } from "./auth/token-verifier.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether the value has the shape of an id Parley generates. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** A resource id Parley generated (a UUID); a malformed one can name nothing. */
export function requireUuid(field: string, value: string): string {
  if (value === "") throw new InvalidInputError(field, "is required");
  if (!UUID.test(value)) throw new InvalidInputError(field, "is not a valid id");
  return value.toLowerCase();
}

/** A user id as it appears in token subjects. */
export function requireUserId(field: string, value: string): string {
  if (value === "") throw new InvalidInputError(field, "is required");
  if (value.length > MAX_USER_ID_LENGTH) throw new InvalidInputError(field, `is longer than ${MAX_USER_ID_LENGTH} characters`);
  return value;
}

/** Text bounded in characters (code points), for names and descriptions. */
export function boundedText(field: string, value: string, maxChars: number): string {
  if ([...value].length > maxChars) throw new InvalidInputError(field, `is longer than ${maxChars} characters`);
  return value;
}

/** The page size to use: the default when 0, else 1..max. */
export function pageSize(value: number, fallback: number, max: number): number {
  if (value === 0) return Math.min(fallback, max);
  if (value < 0 || value > max) throw new InvalidInputError("page_size", `must be from 1 to ${max}`);
  return value;
}

/** A seq as sent by a client: a positive int64 that fits the database. */
export function requireSeq(field: string, value: bigint, { allowZero = false } = {}): bigint {
  if (value < 0n || (value === 0n && !allowZero)) throw new InvalidInputError(field, allowZero ? "must not be negative" : "must be positive");
  return value;
}

const INT8_MAX = 2n ** 63n - 1n;
const INT4_MAX = 2 ** 31 - 1;

/** A non-negative whole number in decimal that fits PostgreSQL's int8 (from a page token). */
export function requireInt8Digits(field: string, value: string): string {
  if (!/^\d{1,19}$/.test(value) || BigInt(value) > INT8_MAX) throw new InvalidInputError(field, "is not a token this call issued");
  return value;
}

/** A uint32 from the wire that must fit PostgreSQL's int4 (key epochs). */
export function requireInt4(field: string, value: number): number {
  if (value > INT4_MAX) throw new InvalidInputError(field, `is larger than ${INT4_MAX}`);
  return value;
}
