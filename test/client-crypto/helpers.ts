/** Shared fixtures for the client crypto tests. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { PlainContentSchema, type PlainContent } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { DecryptError, type DecryptErrorReason } from "../../src/client/crypto/index.ts";

/** A PlainContent with the given text. */
export function content(text: string): PlainContent {
  return create(PlainContentSchema, { text });
}

/** Asserts that fn throws (or rejects with) a DecryptError with the reason. */
export async function assertDecryptError(fn: () => unknown, reason: DecryptErrorReason): Promise<void> {
  await assert.rejects(async () => fn(), (error: unknown) => {
    assert.ok(error instanceof DecryptError, `expected a DecryptError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    return true;
  });
}

/** A copy of bytes with one bit flipped at index (from the end when negative). */
export function flipBit(bytes: Uint8Array, index: number): Uint8Array {
  const copy = bytes.slice();
  const at = index < 0 ? copy.length + index : index;
  copy[at] = (copy[at] ?? 0) ^ 0x01;
  return copy;
}
