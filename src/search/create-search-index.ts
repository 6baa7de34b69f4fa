/** Picks the search backend: OpenSearch when OPENSEARCH_URL is set, else PostgreSQL full-text. */
import { Client } from "@opensearch-project/opensearch";
import type { Kysely } from "kysely";
import type { SearchConfig } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { createOpenSearch } from "./opensearch-search.ts";
import { createPostgresSearch } from "./postgres-search.ts";
import type { SearchIndex } from "./search-index.ts";

export function createSearchIndex(config: SearchConfig, db: Kysely<Database>): SearchIndex {
  if (config.opensearchUrl === null) return createPostgresSearch(db, { windowReadRows: config.windowReadRows });
  return createOpenSearch({ client: new Client({ node: config.opensearchUrl }), prefix: config.opensearchIndex });
}
