export { createSearchIndex } from "./create-search-index.ts";
export { createOpenSearch } from "./opensearch-search.ts";
export { createPostgresSearch } from "./postgres-search.ts";
export { createSearchIndexer } from "./search-indexer.ts";
export { createSearchMetrics, type SearchMetrics } from "./search-metrics.ts";
export type { SearchIndex } from "./search-index.ts";
export { SearchService } from "./search-service.ts";
