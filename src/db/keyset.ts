/**
 * Keyset paging on (timestamp DESC, text id): the position travels in page tokens as
 * microseconds since the epoch (a decimal string), exact at PostgreSQL's precision, which a
 * JavaScript Date (milliseconds) would not be.
 */
import { sql, type RawBuilder } from "kysely";

/** The column as microseconds since the epoch, a decimal string in the result row. */
export function microsOf(column: string): RawBuilder<string> {
  return sql<string>`(extract(epoch from ${sql.ref(column)}) * 1000000)::int8::text`;
}

/** Rows strictly after (older than, or tied and later by id) the position, in DESC order. */
export function olderThan(timeColumn: string, idColumn: string, position: { micros: string; id: string } | null): RawBuilder<boolean> {
  if (position === null) return sql<boolean>`true`;
  return sql<boolean>`(${sql.ref(timeColumn)}, ${sql.ref(idColumn)}) < (timestamptz 'epoch' + ${position.micros}::int8 * interval '1 microsecond', ${position.id})`;
}
