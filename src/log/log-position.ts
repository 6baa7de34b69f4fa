/**
 * A position in the partitioned event log: one position per partition (everything up to it
 * in each partition). Arrays of bigints, never mutated once handed out, so one can be shared by
 * every stream that reached it.
 */
export type LogPosition = readonly bigint[];

/** True when `a` is at or past `b` in every partition. */
export function covers(a: LogPosition, b: LogPosition): boolean {
  for (let i = 0; i < b.length; i++) if (a[i]! < b[i]!) return false;
  return true;
}

/** The later of the two in each partition. */
export function furthest(a: LogPosition, b: LogPosition): LogPosition {
  return a.map((value, i) => (value > b[i]! ? value : b[i]!));
}

/** The position with one partition moved to `position`. */
export function withPartitionAt(at: LogPosition, partition: number, position: bigint): LogPosition {
  const next = [...at];
  next[partition] = position;
  return next;
}
