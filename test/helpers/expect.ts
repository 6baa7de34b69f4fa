/**
 * Assertions about RPC outcomes: which Connect code a call fails with and which request field
 * a google.rpc.BadRequest names.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";

/** Awaits the call and asserts that it fails with the code; returns the error. */
export async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  let result: unknown;
  try {
    result = await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(
      ce.code,
      code,
      `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.rawMessage}`,
    );
    return ce;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded: ${safeJson(result)}`);
}

/** Awaits the call and asserts that it fails with one of the codes; returns the error. */
export async function expectOneOfCodes(call: Promise<unknown>, codes: Code[]): Promise<ConnectError> {
  let result: unknown;
  try {
    result = await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.ok(
      codes.includes(ce.code),
      `expected one of ${codes.map((c) => Code[c]).join(", ")}, got ${Code[ce.code]}: ${ce.rawMessage}`,
    );
    return ce;
  }
  assert.fail(`expected one of ${codes.map((c) => Code[c]).join(", ")}, but the call succeeded: ${safeJson(result)}`);
}

/** The `field` of every BadRequest field violation in the error's details. */
export function violatedFields(err: ConnectError): string[] {
  return err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

/**
 * Whether a violation's field path names the proto field: `text`, `member_ids[2]`,
 * `content.text`, or its JSON name (`clientMessageId`).
 */
export function namesField(path: string, field: string): boolean {
  const camel = field.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return [field, camel].some(
    (f) => path === f || path.endsWith(`.${f}`) || path.startsWith(`${f}[`) || path.startsWith(`${f}.`) ||
      path.includes(`.${f}[`) || path.includes(`.${f}.`),
  );
}

/**
 * Awaits the call and asserts INVALID_ARGUMENT with a BadRequest field violation naming one of
 * the fields (several are allowed where the contract leaves the exact path open, such as a
 * missing oneof).
 */
export async function expectInvalidArgument(call: Promise<unknown>, ...fields: string[]): Promise<ConnectError> {
  const err = await expectCode(call, Code.InvalidArgument);
  const violated = violatedFields(err);
  assert.ok(
    violated.some((path) => fields.some((f) => namesField(path, f))),
    `expected a BadRequest field violation naming ${fields.join(" or ")}; got ${safeJson(violated)} (message: ${err.rawMessage})`,
  );
  return err;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
  } catch {
    return String(value);
  }
}
