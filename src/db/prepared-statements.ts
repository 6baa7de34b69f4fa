/**
 * Named prepared statements for the hottest reads (ListConversations, ListMessages,
 * GetMessage). Kysely sends every statement unnamed, so PostgreSQL plans it on
 * every call; for these reads planning cost about as much as running them (a join of five
 * tables, a lateral lookup, a page of 50 rows). A statement that starts with `preparedSql`'s
 * marker is sent as a named statement instead: each pooled connection parses and plans it once
 * and then reuses the plan (PostgreSQL keeps custom plans for the first five runs, then keeps a
 * generic plan when it costs no more).
 *
 * Only statements whose text does not depend on input sizes may carry the marker (arrays as
 * one bind parameter, never `in (...)` lists): every distinct text is prepared on every
 * connection and lives as long as it. Statements whose best plan depends on their parameters
 * (full-text search: a rare word and a common one want different plans) must not, and each
 * marked one must be measured: the story tray's generic plan was three times slower than
 * planning it on every call.
 *
 * Named statements need a session of their own: behind a transaction-pooling PgBouncer older
 * than 1.21 (which does not track protocol-level prepared statements), set
 * PREPARED_STATEMENTS=off.
 */
import { createHash } from "node:crypto";
import { sql, type RawBuilder } from "kysely";
import type { PostgresPool, PostgresPoolClient } from "kysely";
import type pg from "pg";

const MARKER = "/*prepared*/";

/** Prefix for a statement worth preparing: `sql\`${preparedSql} select ...\``. */
export const preparedSql: RawBuilder<unknown> = sql.raw(MARKER);

/** The pool Kysely uses, sending marked statements as named prepared statements. */
export function preparingPool(pool: pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `parley_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
      names.set(text, name);
    }
    return name;
  };
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect();
      return {
        query(textOrCursor: unknown, values?: ReadonlyArray<unknown>) {
          if (typeof textOrCursor === "string" && textOrCursor.startsWith(MARKER)) {
            return client.query({ name: nameOf(textOrCursor), text: textOrCursor, values: values as unknown[] });
          }
          return (client.query as (...args: unknown[]) => unknown)(textOrCursor, values);
        },
        release: (destroy?: boolean) => client.release(destroy),
      } as PostgresPoolClient;
    },
    end: () => pool.end(),
  };
}
