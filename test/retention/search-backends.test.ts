/**
 * Retention inside the search backends' own queries (not only in SearchService's check of the
 * hits against PostgreSQL): given each conversation's deadline, the PostgreSQL backend leaves
 * older messages out in both of its plans, and the OpenSearch backend sends a filter that does
 * (checked as the DSL it sends; no OpenSearch server runs here, see test/search-unit).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Client } from "@opensearch-project/opensearch";
import { pino } from "pino";
import { Registry } from "prom-client";
import { migrate, openDatabase, type DatabaseHandle } from "../../src/db/index.ts";
import { createOpenSearch, createPostgresSearch, createSearchIndexer, createSearchMetrics, type SearchIndex } from "../../src/search/index.ts";
import { conversationFilter } from "../../src/search/opensearch-search.ts";
import { createLexemeStats } from "../../src/search/lexeme-stats.ts";
import { parseQuery } from "../../src/search/query-parser.ts";
import { sql } from "kysely";
import { createTestDatabase, type FreshDatabase } from "../helpers/test-server.ts";
import { created, message, query } from "../search-unit/index-fixtures.ts";
import { startFakeOpenSearch, type FakeOpenSearch } from "../search-unit/fake-opensearch.ts";

const NOW = Date.now();
const HOUR = 3600_000;

describe("retention in the PostgreSQL search backend's queries", () => {
  let fresh: FreshDatabase | null;
  let database: DatabaseHandle;
  let index: SearchIndex;

  before(async () => {
    fresh = await createTestDatabase();
    database = await openDatabase({ url: fresh?.url ?? null, embeddedPath: "memory://", poolSize: 4 });
    await migrate(database.db);
  });
  after(async () => {
    await database?.close();
    await fresh?.drop();
  });

  it("matches only messages created after each conversation's deadline, in the ranked and the newest-first plan", async () => {
    const word = `zq${randomUUID().slice(0, 8)}`;
    const withRetention = randomUUID();
    const without = randomUUID();
    const docs = {
      old: message({ conversationId: withRetention, seq: 1n, text: `${word} old`, createdAtMs: NOW - 2 * HOUR }),
      edge: message({ conversationId: withRetention, seq: 2n, text: `${word} at the deadline`, createdAtMs: NOW - HOUR }),
      recent: message({ conversationId: withRetention, seq: 3n, text: `${word} recent`, createdAtMs: NOW - HOUR + 1 }),
      keptOld: message({ conversationId: without, seq: 1n, text: `${word} kept`, createdAtMs: NOW - 2 * HOUR }),
    };
    index = createPostgresSearch(database.db);
    const indexer = createSearchIndexer({ index, metrics: createSearchMetrics(new Registry()), logger: pino({ level: "silent" }) });
    await indexer.handle(Object.values(docs).map(created));
    // Statistics that make the word broad, read by the backend on its first search.
    await sql`analyze message_search`.execute(database.db);
    assert.ok((await createLexemeStats(database.db).shareOf(parseQuery(word))) >= 0.02, "precondition: the word counts as broad");
    const retainedAfterMs = new Map([[withRetention, NOW - HOUR]]);
    const expected = [docs.recent.id, docs.keptOld.id].sort();
    // Every indexed message has the word: the newest-first plan (a broad word) for recency.
    for (const order of ["relevance", "recency"] as const) {
      const page = await index.search(query(word, [withRetention, without], { order, retainedAfterMs }));
      assert.deepEqual(page.hits.map((h) => h.messageId).sort(), expected, `${order}: created at or before the deadline is past retention`);
      const unfiltered = await index.search(query(word, [withRetention, without], { order }));
      assert.equal(unfiltered.hits.length, 4, `${order}: without deadlines everything matches`);
    }
    const pageOne = await index.search(query(word, [withRetention, without], { order: "recency", retainedAfterMs, limit: 1 }));
    const pageTwo = await index.search(query(word, [withRetention, without], { order: "recency", retainedAfterMs, limit: 1, after: pageOne.next }));
    assert.deepEqual([...pageOne.hits, ...pageTwo.hits].map((h) => h.messageId).sort(), expected, "paging keeps the filter");
    assert.equal(pageTwo.next, null);
  });
});

describe("retention in the OpenSearch backend's queries (as the DSL it sends)", () => {
  let fake: FakeOpenSearch;
  let index: SearchIndex;

  beforeEach(async () => {
    fake = await startFakeOpenSearch();
    index = createOpenSearch({ client: new Client({ node: fake.url }), prefix: "retention-test", writersCacheMs: 50 });
  });
  afterEach(async () => {
    await index.close();
    await fake.close();
  });

  it("filters each conversation with a deadline by created_at > deadline, grouping equal deadlines, and leaves the others open", async () => {
    const [a, b, c, d] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    fake.searchResponses.push({ hits: { hits: [] } });
    await index.search(query("tent", [a, b, c, d], { retainedAfterMs: new Map([[a, 1000], [b, 2000], [c, 1000]]) }));
    const body = fake.requests.find((r) => r.path.endsWith("/_search"))!.body as any;
    assert.deepEqual(body.query.bool.filter[0], {
      bool: {
        should: [
          { terms: { conversation_id: [d] } },
          { bool: { filter: [{ terms: { conversation_id: [a, c] } }, { range: { created_at: { gt: 1000 } } }] } },
          { bool: { filter: [{ terms: { conversation_id: [b] } }, { range: { created_at: { gt: 2000 } } }] } },
        ],
        minimum_should_match: 1,
      },
    });
    assert.deepEqual(body.query.bool.filter[1], { term: { deleted: false } }, "the other filters follow as before");
  });

  it("sends one clause for all conversations under one deadline (a deployment retention), and the plain terms filter without any", () => {
    const ids = [randomUUID(), randomUUID()];
    assert.deepEqual(conversationFilter(ids, new Map(ids.map((id) => [id, 5]))), {
      bool: { should: [{ bool: { filter: [{ terms: { conversation_id: ids } }, { range: { created_at: { gt: 5 } } }] } }], minimum_should_match: 1 },
    });
    assert.deepEqual(conversationFilter(ids), { terms: { conversation_id: ids } });
    assert.deepEqual(conversationFilter(ids, new Map()), { terms: { conversation_id: ids } });
  });
});
