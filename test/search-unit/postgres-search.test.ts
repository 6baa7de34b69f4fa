/**
 * The indexer's handler and the PostgreSQL backend together, fed constructed events (the
 * events an edit or a delete will produce, replayed and reordered the way a durable consumer
 * can deliver them). Runs on embedded PGlite, or on a fresh PostgreSQL database when
 * DATABASE_URL is set.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { pino } from "pino";
import { Registry } from "prom-client";
import { migrate, openDatabase, type DatabaseHandle } from "../../src/db/index.ts";
import { InvalidInputError } from "../../src/errors.ts";
import { createPostgresSearch, createSearchIndexer, createSearchMetrics, type SearchIndex } from "../../src/search/index.ts";
import type { IndexChanges } from "../../src/search/search-index.ts";
import { createTestDatabase, type FreshDatabase } from "../helpers/test-server.ts";
import { created, deleted, edited, message, query } from "./index-fixtures.ts";

describe("search indexer on the PostgreSQL backend", () => {
  let fresh: FreshDatabase | null;
  let database: DatabaseHandle;
  let index: SearchIndex;
  let registry: Registry;
  let indexer: ReturnType<typeof createSearchIndexer>;

  before(async () => {
    fresh = await createTestDatabase();
    database = await openDatabase({ url: fresh?.url ?? null, embeddedPath: "memory://", poolSize: 4 });
    await migrate(database.db);
    index = createPostgresSearch(database.db);
    registry = new Registry();
    indexer = createSearchIndexer({ index, metrics: createSearchMetrics(registry), logger: pino({ level: "silent" }) });
  });
  after(async () => {
    await database?.close();
    await fresh?.drop();
  });

  async function ids(text: string, conversations: string[], more = {}) {
    const page = await index.search(query(text, conversations, more));
    return page.hits.map((h) => h.messageId);
  }

  it("finds a message after its created event, by words in any order, phrases and exclusions", async () => {
    const c = randomUUID();
    const tent = message({ conversationId: c, seq: 1n, text: "Who brings the tent to the lake?" });
    const boat = message({ conversationId: c, seq: 2n, text: "The boat stays at the lake" });
    assert.deepEqual(await indexer.handle([created(tent), created(boat)]), ["done", "done"]);
    assert.deepEqual(await ids("LAKE tent", [c]), [tent.id]);
    assert.deepEqual((await ids("lake", [c])).sort(), [tent.id, boat.id].sort());
    assert.deepEqual(await ids('"to the lake"', [c]), [tent.id]);
    assert.deepEqual(await ids('"lake the to"', [c]), []);
    assert.deepEqual(await ids("lake -tent", [c]), [boat.id]);
    assert.deepEqual(await ids('lake -"the tent"', [c]), [boat.id]);
  });

  it("only searches the conversations it is given", async () => {
    const mine = randomUUID();
    const other = randomUUID();
    const a = message({ conversationId: mine, seq: 1n, text: "secret meeting" });
    const b = message({ conversationId: other, seq: 1n, text: "secret meeting" });
    await indexer.handle([created(a), created(b)]);
    assert.deepEqual(await ids("secret", [mine]), [a.id]);
  });

  it("replaces the text on an edit, and never goes back to an older version however events arrive", async () => {
    const c = randomUUID();
    const id = randomUUID();
    const v1 = message({ conversationId: c, seq: 1n, id, text: "meet at noon" });
    const v2 = message({ conversationId: c, seq: 1n, id, version: 2, text: "meet at midnight" });
    const v3 = message({ conversationId: c, seq: 1n, id, version: 3, text: "meet at dawn" });
    await indexer.handle([created(v1)]);
    await indexer.handle([edited(v3), edited(v2)]); // out of order within a batch
    await indexer.handle([created(v1)]); // a replay of the first event
    await indexer.handle([edited(v2)]); // and a late one
    assert.deepEqual(await ids("noon", [c]), []);
    assert.deepEqual(await ids("midnight", [c]), []);
    const page = await index.search(query("dawn", [c]));
    assert.deepEqual(page.hits.map((h) => [h.messageId, h.version]), [[id, 3]]);
  });

  it("removes a deleted message for good: replayed or late created and edited events never bring it back", async () => {
    const c = randomUUID();
    const m = message({ conversationId: c, seq: 1n, text: "delete me please" });
    const late = message({ conversationId: c, seq: 2n, text: "deleted before it was indexed" });
    await indexer.handle([created(m)]);
    await indexer.handle([deleted(m)]);
    await indexer.handle([created(m), edited(message({ conversationId: c, seq: 1n, id: m.id, version: 5, text: "delete me please" }))]);
    await indexer.handle([deleted(late)]);
    await indexer.handle([created(late)]);
    await indexer.handle([created(m), deleted(m), created(m)]); // all in one batch
    assert.deepEqual(await ids("delete", [c]), []);
    assert.deepEqual(await ids("indexed", [c]), []);
  });

  it("never indexes an encrypted message", async () => {
    const c = randomUUID();
    const sealed = message({ conversationId: c, seq: 1n });
    assert.deepEqual(await indexer.handle([created(sealed), edited(message({ conversationId: c, seq: 1n, id: sealed.id, version: 2 }))]), ["done", "done"]);
    const rows = await database.db.selectFrom("message_search" as never).selectAll().where("conversation_id" as never, "=", c as never).execute();
    assert.equal(rows.length, 0);
  });

  it("filters by sender and by created time (from inclusive, before exclusive)", async () => {
    const c = randomUUID();
    const t = Date.UTC(2026, 0, 1);
    const m1 = message({ conversationId: c, seq: 1n, text: "standup notes", senderId: "alice", createdAtMs: t });
    const m2 = message({ conversationId: c, seq: 2n, text: "standup notes", senderId: "bob", createdAtMs: t + 1000 });
    const m3 = message({ conversationId: c, seq: 3n, text: "standup notes", senderId: "alice", createdAtMs: t + 2000 });
    await indexer.handle([created(m1), created(m2), created(m3)]);
    assert.deepEqual(await ids("standup", [c], { senderId: "alice", order: "recency" }), [m3.id, m1.id]);
    assert.deepEqual(await ids("standup", [c], { createdFromMs: t + 1000, order: "recency" }), [m3.id, m2.id]);
    assert.deepEqual(await ids("standup", [c], { createdBeforeMs: t + 1000 }), [m1.id]);
    assert.deepEqual(await ids("standup", [c], { senderId: "alice", createdFromMs: t + 1, createdBeforeMs: t + 2001 }), [m3.id]);
  });

  it("orders by relevance then recency, or by recency alone, and pages without gaps or repeats", async () => {
    const c = randomUUID();
    const t = Date.UTC(2026, 1, 1);
    const strong = message({ conversationId: c, seq: 1n, text: "rocket rocket rocket launch", createdAtMs: t });
    const weak = Array.from({ length: 7 }, (_, i) =>
      message({ conversationId: c, seq: BigInt(i + 2), text: `the rocket number ${i} was seen over a long and winding coastline`, createdAtMs: t + 1000 * (i + 1) }),
    );
    await indexer.handle([strong, ...weak].map(created));
    const relevance = await ids("rocket", [c]);
    assert.equal(relevance[0], strong.id);
    assert.deepEqual(relevance.slice(1), weak.map((m) => m.id).reverse());
    const recency = await ids("rocket", [c], { order: "recency" });
    assert.deepEqual(recency, [...weak.map((m) => m.id).reverse(), strong.id]);
    for (const order of ["relevance", "recency"] as const) {
      const walked: string[] = [];
      let after = null;
      do {
        const page = await index.search(query("rocket", [c], { order, limit: 3, after }));
        walked.push(...page.hits.map((h) => h.messageId));
        after = page.next;
      } while (after !== null);
      assert.deepEqual(walked, order === "relevance" ? relevance : recency);
    }
  });

  it("answers a query for a very common word (per PostgreSQL's statistics) newest first, and pages every match in both orders", async () => {
    const conversations = [randomUUID(), randomUUID(), randomUUID()];
    const t = Date.UTC(2026, 2, 1);
    const messages = conversations.flatMap((c, k) =>
      Array.from({ length: 40 }, (_, i) =>
        message({ conversationId: c, seq: BigInt(i + 1), text: i % 10 === 0 ? "ubiquitous ubiquitous alpha" : `ubiquitous filler ${i}`, createdAtMs: t + (i * 3 + k) * 1000 }),
      ),
    );
    await indexer.handle(messages.map(created));
    await sql`analyze message_search`.execute(database.db);
    const fresh = createPostgresSearch(database.db); // reads the statistics ANALYZE just wrote
    const walk = async (order: "relevance" | "recency") => {
      const walked: string[] = [];
      let after = null;
      do {
        const page = await fresh.search(query("ubiquitous", conversations, { order, limit: 7, after }));
        walked.push(...page.hits.map((h) => h.messageId));
        after = page.next;
      } while (after !== null);
      return walked;
    };
    const newestFirst = [...messages].sort((a, b) => Number(b.createdAt!.seconds - a.createdAt!.seconds)).map((m) => m.id);
    assert.deepEqual(await walk("recency"), newestFirst);
    const relevance = await walk("relevance");
    assert.deepEqual([...relevance].sort(), [...newestFirst].sort(), "every match once");
    const strong = messages.filter((m) => m.content.value === "ubiquitous ubiquitous alpha").map((m) => m.id);
    assert.deepEqual(new Set(relevance.slice(0, strong.length)), new Set(strong), "the best matches first");
  });

  it("answers odd queries sanely and rejects forged page positions", async () => {
    const c = randomUUID();
    await indexer.handle([created(message({ conversationId: c, seq: 1n, text: "it's 100% O'Brien's café & bar; ok?" }))]);
    for (const text of ["o'brien's", "100%", "café & bar", "'; drop table messages; --", "a:* | b", "\\ ok", "∀x∃y 🙂 ok", "\u0000 ok"]) {
      await index.search(query(text, [c]));
    }
    assert.equal((await ids("o'brien's", [c])).length, 1);
    assert.equal((await ids("CAFE bar", [c])).length, 1);
    await assert.rejects(index.search(query("ok", [c], { after: [1, "x", "y"] })), InvalidInputError);
    await assert.rejects(index.search(query("ok", [c], { order: "recency", after: ["1", "not-a-uuid"] })), InvalidInputError);
  });

  it("asks for a redelivery when the index fails, terminates malformed events, and records the lag", async () => {
    const failing: SearchIndex = { ...index, apply: async (_changes: IndexChanges) => Promise.reject(new Error("index down")) };
    const flaky = createSearchIndexer({ index: failing, metrics: createSearchMetrics(new Registry()), logger: pino({ level: "silent" }) });
    const c = randomUUID();
    const good = created(message({ conversationId: c, seq: 1n, text: "hello" }));
    const bad = created(message({ conversationId: c, seq: 0n, text: "no seq" }));
    const outcomes = await flaky.handle([good, { ...good, deliveryCount: 4 }, bad]);
    assert.deepEqual(outcomes.slice(0, 2), [{ retryAfterMs: 500 }, { retryAfterMs: 4000 }]);
    assert.ok(typeof outcomes[2] === "object" && "poison" in outcomes[2]);
    await indexer.handle([good]);
    assert.match(await registry.metrics(), /^parley_search_index_lag_seconds_count [1-9]/m);
  });
});
