/**
 * The time range of an analytics request: buckets whose start is in [from, to), hours or days,
 * spanning at most 31 days of hours or 366 days of days (so an answer is at most 744 or 366
 * buckets).
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Granularity, type AnalyticsRange } from "../../gen/parley/v1/analytics_service_pb.ts";
import { InvalidInputError } from "../errors.ts";
import type { BucketRange } from "./analytics-repository.ts";

const DAY_MS = 24 * 3600 * 1000;
/** Longest span per bucket size. */
export const MAX_SPAN_MS = { hour: 31 * DAY_MS, day: 366 * DAY_MS } as const;
/** The range of timestamps PostgreSQL and the protobuf well-known type both hold (years 1–9999). */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

export function requireRange(range: AnalyticsRange | undefined): BucketRange {
  if (!range) throw new InvalidInputError("range", "is required");
  const granularity = range.granularity === Granularity.UNSPECIFIED || range.granularity === Granularity.HOUR ? "hour" : range.granularity === Granularity.DAY ? "day" : null;
  if (granularity === null) throw new InvalidInputError("range.granularity", "must be GRANULARITY_HOUR or GRANULARITY_DAY");
  const from = requireTime("range.from", range.from);
  const to = requireTime("range.to", range.to);
  if (from >= to) throw new InvalidInputError("range.to", "must be after range.from");
  if (to - from > MAX_SPAN_MS[granularity]) throw new InvalidInputError("range.to", `must be at most ${granularity === "hour" ? 31 : 366} days after range.from for ${granularity}s`);
  return { granularity, from: new Date(from), to: new Date(to) };
}

/** Milliseconds since the epoch, rounded up: "bucket >= from" and "bucket < to" hold as for the exact time. */
function requireTime(field: string, value: Timestamp | undefined): number {
  if (!value) throw new InvalidInputError(field, "is required");
  if (value.seconds < MIN_SECONDS || value.seconds > MAX_SECONDS || value.nanos < 0 || value.nanos > 999_999_999) {
    throw new InvalidInputError(field, "is not a valid timestamp");
  }
  return Number(value.seconds) * 1000 + Math.ceil(value.nanos / 1_000_000);
}
