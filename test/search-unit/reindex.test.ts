/**
 * `npm run reindex`'s work on the PostgreSQL backend: rebuilds message_search from messages
 * (text indexed, encrypted left out), resumes an interrupted run from its stored position, and
 * never undoes a newer version the live indexer wrote meanwhile.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { migrate, openDatabase, type DatabaseHandle } from "../../src/db/index.ts";
import { createPostgresSearch, type SearchIndex } from "../../src/search/index.ts";
import { reindex, type ReindexProgress } from "../../src/search/reindex.ts";
import { createTestDatabase, type FreshDatabase } from "../helpers/test-server.ts";
import { query } from "./index-fixtures.ts";

describe("search reindex from PostgreSQL", () => {
  let fresh: FreshDatabase | null;
  let database: DatabaseHandle;
  let index: SearchIndex;
  const conversation = randomUUID();
  const ids: string[] = [];

  before(async () => {
    fresh = await createTestDatabase();
    database = await openDatabase({ url: fresh?.url ?? null, embeddedPath: "memory://", poolSize: 4 });
    await migrate(database.db);
    index = createPostgresSearch(database.db);
    await sql`insert into conversations (id, type, name, created_by) values (${conversation}, 2, 'g', 'alice')`.execute(database.db);
    for (let seq = 1; seq <= 9; seq++) {
      const id = randomUUID();
      ids.push(id);
      const encrypted = seq === 9;
      await sql`
        insert into messages (conversation_id, seq, id, sender_id, client_message_id, body_text, envelope_ciphertext, envelope_algorithm)
        values (${conversation}, ${seq}, ${id}, 'alice', ${`c${seq}`}, ${encrypted ? null : `harbour note ${seq}`},
                ${encrypted ? new Uint8Array([1]) : null}, ${encrypted ? "x" : null})`.execute(database.db);
    }
  });
  after(async () => {
    await database?.close();
    await fresh?.drop();
  });

  async function found(): Promise<string[]> {
    const page = await index.search(query("harbour", [conversation], { order: "recency", limit: 100 }));
    return page.hits.map((h) => h.messageId);
  }

  it("resumes an interrupted rebuild from its stored position and ends with every text message indexed", async () => {
    assert.deepEqual(await found(), []);
    let writes = 0;
    const interrupted: SearchIndex = {
      ...index,
      async rebuild(target) {
        const inner = await index.rebuild(target);
        return { ...inner, write: async (changes) => (++writes > 2 ? Promise.reject(new Error("killed")) : inner.write(changes)) };
      },
    };
    await assert.rejects(reindex({ db: database.db, index: interrupted, batchSize: 2 }), /killed/);
    const state = (await sql<{ after_seq: string; copied: string }>`select after_seq, copied from search_reindex`.execute(database.db)).rows;
    assert.deepEqual(state.map((s) => [s.after_seq, Number(s.copied)]), [["4", 4]]);
    assert.equal((await found()).length, 4);

    const seen: ReindexProgress[] = [];
    const result = await reindex({ db: database.db, index, batchSize: 2, onProgress: (p) => seen.push({ ...p }) });
    assert.deepEqual(seen[0], { copied: 4, total: 9, resumed: true });
    assert.deepEqual(result, { copied: 9, total: 9, resumed: true });
    assert.deepEqual(new Set(await found()), new Set(ids.slice(0, 8)), "every text message, no encrypted one");
    assert.equal((await sql`select 1 from search_reindex`.execute(database.db)).rows.length, 0, "a finished run leaves no position");
  });

  it("does not undo a newer version the live indexer wrote, and keeps deleted messages out", async () => {
    const [first, second] = ids;
    await index.apply({
      upserts: [{ conversationId: conversation, seq: 1n, messageId: first!, version: 3, senderId: "alice", createdAt: new Date(), text: "lighthouse" }],
      removals: [{ conversationId: conversation, seq: 2n, messageId: second! }],
    });
    await reindex({ db: database.db, index, restart: true });
    const lighthouse = await index.search(query("lighthouse", [conversation]));
    assert.deepEqual(lighthouse.hits.map((h) => [h.messageId, h.version]), [[first, 3]]);
    assert.ok(!(await found()).includes(second!));
  });
});
