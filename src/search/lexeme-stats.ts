/**
 * How common each indexed word is, from PostgreSQL's own statistics on message_search.tsv
 * (pg_stats.most_common_elems, refreshed by ANALYZE / autovacuum), cached for a few minutes.
 * The PostgreSQL backend uses it to tell a broad query (a word in a large share of all
 * messages) from a selective one, which it answers differently.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { ParsedQuery } from "./query-parser.ts";

const REFRESH_MS = 5 * 60_000;

export interface LexemeStats {
  /**
   * An estimate of the share of messages the query's words could match: the rarest included
   * term's share, a phrase counting as the product of its words' shares. Words the statistics
   * do not list are rare (0).
   */
  shareOf(query: ParsedQuery): Promise<number>;
}

export function createLexemeStats(db: Kysely<Database>): LexemeStats {
  let shares = new Map<string, number>();
  let loadedAt = -Infinity;
  let loading: Promise<void> | null = null;

  async function load(): Promise<void> {
    const row = (
      await sql<{ elems: string[] | null; freqs: number[] | null }>`
        select most_common_elems::text::text[] as elems, most_common_elem_freqs as freqs
        from pg_stats where schemaname = current_schema() and tablename = 'message_search' and attname = 'tsv'`.execute(db)
    ).rows[0];
    const elems = row?.elems ?? [];
    shares = new Map(elems.map((word, i) => [word, Number(row?.freqs?.[i] ?? 0)]));
    loadedAt = Date.now();
  }

  return {
    async shareOf(query) {
      if (Date.now() - loadedAt > REFRESH_MS) {
        // Without statistics every query takes the selective path, which is always correct.
        loading ??= load()
          .catch(() => void (loadedAt = Date.now()))
          .finally(() => (loading = null));
        await loading;
      }
      return Math.min(...query.include.map((term) => term.words.reduce((share, word) => share * (shares.get(word) ?? 0), 1)));
    },
  };
}
