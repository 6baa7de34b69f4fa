/**
 * The OpenSearch backend against a recording HTTP endpoint (test/search-unit/fake-opensearch.ts):
 * the template and mappings it installs, the bulk bodies and versions it writes (and how the
 * indexer on top of it survives replays and reordering under OpenSearch's external
 * versioning), the query DSL it sends, and the alias swap of a rebuild. Nothing here proves
 * that a real cluster accepts these requests; see the README's search section.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Client } from "@opensearch-project/opensearch";
import { pino } from "pino";
import { Registry } from "prom-client";
import { createOpenSearch, createSearchIndexer, createSearchMetrics, type SearchIndex } from "../../src/search/index.ts";
import { TOMBSTONE_VERSION } from "../../src/search/opensearch-search.ts";
import { InvalidInputError } from "../../src/errors.ts";
import { created, deleted, edited, message, query } from "./index-fixtures.ts";
import { startFakeOpenSearch, type FakeOpenSearch } from "./fake-opensearch.ts";

const PREFIX = "test-messages";

describe("search on OpenSearch (against a recording endpoint)", () => {
  let fake: FakeOpenSearch;
  let index: SearchIndex;
  let indexer: ReturnType<typeof createSearchIndexer>;

  beforeEach(async () => {
    fake = await startFakeOpenSearch();
    index = createOpenSearch({ client: new Client({ node: fake.url }), prefix: PREFIX, writersCacheMs: 50 });
    indexer = createSearchIndexer({ index, metrics: createSearchMetrics(new Registry()), logger: pino({ level: "silent" }) });
  });
  afterEach(async () => {
    await index.close();
    await fake.close();
  });

  function bulkBodies(): Record<string, any>[][] {
    return fake.requests.filter((r) => r.path === "/_bulk").map((r) => r.body as Record<string, any>[]);
  }

  function onlyIndex(): Map<string, { version: number; routing: string | undefined; source: Record<string, unknown> }> {
    assert.equal(fake.indices.size, 1);
    return [...fake.indices.values()][0]!;
  }

  it("installs a template with a folding analyzer that keeps originals, strict mappings, and a first index behind both aliases", async () => {
    await indexer.handle([created(message({ conversationId: randomUUID(), seq: 1n, text: "hello" }))]);
    const template = fake.templates.get(PREFIX) as any;
    assert.deepEqual(template.index_patterns, [`${PREFIX}-v*`]);
    const analysis = template.template.settings.analysis;
    assert.deepEqual(analysis.analyzer.message_text, { type: "custom", tokenizer: "standard", filter: ["lowercase", "folding_keep_original"] });
    assert.deepEqual(analysis.filter.folding_keep_original, { type: "asciifolding", preserve_original: true });
    assert.deepEqual(analysis.analyzer.message_query.filter, ["lowercase", "asciifolding"]);
    const mappings = template.template.mappings;
    assert.equal(mappings.dynamic, "strict");
    assert.deepEqual(mappings.properties.body, { type: "text", analyzer: "message_text", search_analyzer: "message_query" });
    for (const field of ["conversation_id", "message_id", "sender_id"]) assert.equal(mappings.properties[field].type, "keyword");
    assert.equal(mappings.properties.created_at.type, "date");
    const [name] = [...fake.indices.keys()];
    assert.match(name!, new RegExp(`^${PREFIX}-v\\d+$`));
    assert.deepEqual([...fake.aliases.get(PREFIX)!], [name]);
    assert.deepEqual([...fake.aliases.get(`${PREFIX}-write`)!], [name]);
  });

  it("writes one bulk request per batch: ids are message ids, routed by conversation, externally versioned", async () => {
    const c = randomUUID();
    const a = message({ conversationId: c, seq: 1n, text: "first", senderId: "bob", createdAtMs: 1_700_000_000_123 });
    const b = message({ conversationId: c, seq: 2n, text: "second" });
    await indexer.handle([created(a), created(b), deleted(b)]);
    const bodies = bulkBodies();
    assert.equal(bodies.length, 1);
    const [actionA, docA, actionB, docB] = bodies[0]! as [Record<string, any>, Record<string, any>, Record<string, any>, Record<string, any>];
    const target = [...fake.indices.keys()][0];
    assert.deepEqual(actionA, { index: { _index: target, _id: a.id, routing: c, version: 1, version_type: "external" } });
    assert.deepEqual(docA, { conversation_id: c, seq: 1, message_id: a.id, version: 1, sender_id: "bob", created_at: 1_700_000_000_123, deleted: false, body: "first" });
    assert.deepEqual(actionB, { index: { _index: target, _id: b.id, routing: c, version: TOMBSTONE_VERSION, version_type: "external_gte" } });
    assert.equal(docB.deleted, true);
    assert.equal(docB.body, undefined);
    assert.equal(bodies[0]!.length, 4, "the created event of a message deleted in the same batch is not sent");
  });

  it("keeps the newest version and every tombstone when events are replayed or reordered (OpenSearch answers 409)", async () => {
    const c = randomUUID();
    const id = randomUUID();
    const v1 = message({ conversationId: c, seq: 1n, id, text: "draft" });
    const v2 = message({ conversationId: c, seq: 1n, id, version: 2, text: "final" });
    const gone = message({ conversationId: c, seq: 2n, text: "oops" });
    assert.deepEqual(await indexer.handle([edited(v2)]), ["done"]);
    assert.deepEqual(await indexer.handle([created(v1), created(gone)]), ["done", "done"]); // v1 is a 409: already newer
    assert.deepEqual(await indexer.handle([deleted(gone)]), ["done"]);
    assert.deepEqual(await indexer.handle([created(gone), deleted(gone), edited(v2)]), ["done", "done", "done"]);
    const docs = onlyIndex();
    assert.equal(docs.get(id)!.version, 2);
    assert.equal(docs.get(id)!.source.body, "final");
    assert.equal(docs.get(gone.id)!.source.deleted, true);
    const statuses = fake.requests.filter((r) => r.path === "/_bulk").length;
    assert.equal(statuses, 4);
  });

  it("asks for a redelivery when OpenSearch rejects writes (e.g. 429), and never indexes encrypted messages", async () => {
    const c = randomUUID();
    await indexer.handle([created(message({ conversationId: c, seq: 1n, text: "warm up" }))]);
    fake.failBulkItemsWith = 429;
    const outcomes = await indexer.handle([created(message({ conversationId: c, seq: 2n, text: "later" }))]);
    assert.deepEqual(outcomes, [{ retryAfterMs: 500 }]);
    fake.failBulkItemsWith = null;
    const before = bulkBodies().length;
    assert.deepEqual(await indexer.handle([created(message({ conversationId: c, seq: 3n }))]), ["done"]);
    assert.equal(bulkBodies().length, before, "an encrypted message causes no write");
  });

  it("sends the parsed query as match_phrase clauses, never as query syntax, with filters, routing and sort", async () => {
    const c1 = randomUUID();
    const c2 = randomUUID();
    fake.searchResponses.push({
      hits: {
        hits: [
          { _score: 2.5, _source: { conversation_id: c1, seq: 7, message_id: "m7", version: 2 }, sort: [2.5, 1000, "m7"] },
          { _score: 1.5, _source: { conversation_id: c2, seq: 3, message_id: "m3", version: 1 }, sort: [1.5, 900, "m3"] },
        ],
      },
    });
    const page = await index.search(
      query(`tent -"rain check" body:* AND\\ {match_all:{}} "x OR y:[* TO *]"`, [c1, c2], { senderId: "bob", createdFromMs: 100, createdBeforeMs: 200, limit: 1 }),
    );
    const request = fake.requests.find((r) => r.path.endsWith("/_search"))!;
    assert.equal(request.path, `/${PREFIX}/_search`);
    assert.equal(request.query.get("routing"), `${c1},${c2}`);
    const body = request.body as any;
    assert.equal(body.size, 2);
    const phrase = (text: string) => ({ match_phrase: { body: { query: text } } });
    assert.deepEqual(body.query.bool.must, ["tent", "body:*", "AND\\", "{match_all:{}}", "x OR y:[* TO *]"].map(phrase));
    assert.deepEqual(body.query.bool.must_not, [phrase("rain check")]);
    assert.deepEqual(body.query.bool.filter, [
      { terms: { conversation_id: [c1, c2] } },
      { term: { deleted: false } },
      { term: { sender_id: "bob" } },
      { range: { created_at: { gte: 100, lt: 200 } } },
    ]);
    assert.deepEqual(body.sort, [{ _score: { order: "desc" } }, { created_at: { order: "desc" } }, { message_id: { order: "desc" } }]);
    assert.doesNotMatch(JSON.stringify(body), /query_string|simple_query_string|"script"/);
    assert.deepEqual(page.hits, [{ conversationId: c1, seq: 7n, messageId: "m7", version: 2, score: 2.5 }]);
    assert.deepEqual(page.next, [2.5, 1000, "m7"]);

    await index.search(query("tent", [c1], { order: "recency", after: [1000, "m7"] }));
    const second = fake.requests.filter((r) => r.path.endsWith("/_search"))[1]!.body as any;
    assert.deepEqual(second.search_after, [1000, "m7"]);
    assert.deepEqual(second.sort, [{ created_at: { order: "desc" } }, { message_id: { order: "desc" } }]);
    await assert.rejects(index.search(query("tent", [c1], { order: "recency", after: [1, 2, 3] })), InvalidInputError);
  });

  it("rebuilds into a new index that also receives live writes, then swaps the alias atomically and drops the old index", async () => {
    const c = randomUUID();
    const live = message({ conversationId: c, seq: 1n, text: "before the rebuild" });
    await indexer.handle([created(live)]);
    const [old] = [...fake.indices.keys()];
    const rebuild = await index.rebuild(null);
    assert.notEqual(rebuild.target, old);
    assert.deepEqual([...fake.aliases.get(`${PREFIX}-write`)!].sort(), [old, rebuild.target].sort());
    const during = message({ conversationId: c, seq: 2n, text: "during the rebuild" });
    await indexer.handle([created(during)]);
    assert.ok(fake.indices.get(old!)!.has(during.id) && fake.indices.get(rebuild.target)!.has(during.id), "live writes reach both indices");
    await rebuild.write({ upserts: [{ conversationId: c, seq: 1n, messageId: live.id, version: 1, senderId: "alice", createdAt: new Date(), text: "before the rebuild" }], removals: [] });
    await rebuild.write({ upserts: [{ conversationId: c, seq: 2n, messageId: during.id, version: 1, senderId: "alice", createdAt: new Date(), text: "during the rebuild" }], removals: [] });
    const copy = bulkBodies().at(-1)!;
    assert.equal(copy[0]!.index.version_type, "external_gte", "a copy may rewrite the version it finds");
    await rebuild.finish();
    const swap = fake.requests.filter((r) => r.path === "/_aliases").at(-1)!.body as any;
    assert.deepEqual(swap.actions, [
      { add: { index: rebuild.target, alias: PREFIX } },
      { remove: { index: old, alias: PREFIX } },
      { remove: { index: old, alias: `${PREFIX}-write` } },
    ]);
    assert.deepEqual([...fake.indices.keys()], [rebuild.target]);
    assert.deepEqual([...fake.indices.get(rebuild.target)!.keys()].sort(), [live.id, during.id].sort());
  });
});
