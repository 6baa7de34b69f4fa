/**
 * Which RPCs are reads. The contract marks every side-effect-free RPC with
 * `idempotency_level = NO_SIDE_EFFECTS`; everything else (Subscribe included, which holds a
 * stream open and marks the user online) counts as a write for suspensions and rate limits.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";

export function isReadOnly(method: DescMethod): boolean {
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}
