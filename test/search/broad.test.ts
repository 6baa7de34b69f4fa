/**
 * A very common word (issue 7, "a mix of selective and broad queries"): once PostgreSQL's
 * statistics say a word is in a large share of all messages, search may answer it by
 * another plan — but the user must still be able to page through every match, in either
 * order, and every filter still applies exactly. PostgreSQL mode only: it needs ANALYZE on the server's database (what autovacuum
 * does on its own in production).
 *
 * RELEVANCE for such a word ranks within recency windows (src/search/search-windows.ts);
 * the server here makes them tiny (SEARCH_WINDOW_READ_ROWS), so every walk below crosses
 * many window boundaries, with windows of very different sizes (one busy conversation,
 * nineteen quiet ones).
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { clockPast, createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectHits, hitIds, lifecycleOf, Names, orderName, SEARCH_DEADLINE_MS, searchAll, uniqueWord, type SearchRequest } from "./helpers.ts";
import { analyzeSearchTable, searchRowsHolding } from "./search-table.ts";

describe("SearchMessages: a word in most messages", () => {
  let server: TestServer;
  let reader: Clients;
  let sender: string;
  let groups: Conversation[];
  const word = uniqueWord("bw");
  const sent: Message[] = [];
  const once: Message[] = [];
  const often: Message[] = [];
  const names = new Names();

  before(async function () {
    if (!process.env.DATABASE_URL) this.skip(); // ANALYZE needs the server's database
    this.timeout(120_000);
    // A server of its own, so the statistics are about this test's messages only, and no
    // search ran (and cached statistics) before ANALYZE.
    server = await startRealtimeServer({ SEARCH_WINDOW_READ_ROWS: "40" });
    const [a, b, c] = await newUsers(server, 3, "broad");
    sender = a!;
    const A = server.clientsFor(a!, "connect");
    reader = server.clientsFor(b!, "grpc");
    // Twenty conversations; one of them holds most of the matches, all sent after the others.
    groups = await Promise.all(Array.from({ length: 20 }, (_, i) => createGroup(A, [b!, c!], `group ${i}`)));
    for (const group of groups.slice(1)) once.push(await sendText(A, group.id, `${word} once in ${group.name}`));
    await clockPast(once.at(-1)!.createdAt);
    for (let burst = 0; burst < 6; burst++) {
      often.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => sendText(A, groups[0]!.id, `${word} often ${burst * 10 + i}`)))));
    }
    sent.push(...once, ...often);
    names.add(...sent);
    // Indexed (read from the table, not searched: a search now would cache empty statistics).
    await eventually(async () => (await searchRowsHolding(server, word)) === sent.length, `all ${sent.length} messages indexed`, SEARCH_DEADLINE_MS);
    await analyzeSearchTable(server);
  });
  after(async () => {
    await server?.stop();
  });

  for (const order of [SearchOrder.RECENCY, SearchOrder.RELEVANCE]) {
    it(`pages through every match in ${orderName(order)} order`, async () => {
      const walked = hitIds(await searchAll(reader, { query: word, order, pageSize: 20 }));
      const duplicates = walked.filter((id, i) => walked.indexOf(id) !== i);
      assert.deepEqual(duplicates, [], `no hit twice: ${names.of(duplicates)}`);
      const missing = sent.filter((m) => !walked.includes(m.id)).map((m) => m.id);
      assert.deepEqual(missing, [], `every one of the ${sent.length} matches is reachable (walked ${walked.length}); missing ${names.of(missing)}`);
    });
  }

  for (const pageSize of [1, 3, 100]) {
    it(`pages through every match exactly once in RELEVANCE order across windows, ${pageSize} per page`, async () => {
      const pages: string[][] = [];
      let pageToken = "";
      do {
        const res = await reader.search.searchMessages({ query: word, order: SearchOrder.RELEVANCE, pageSize, pageToken });
        assert.ok(res.hits.length <= pageSize, `at most page_size hits, got ${res.hits.length}`);
        pages.push(hitIds(res.hits));
        pageToken = res.nextPageToken;
      } while (pageToken && pages.length < 500);
      assert.equal(pageToken, "", "the walk ends");
      // All of them would fit on one page of 100: windows ending pages early show the walk crosses them.
      if (pageSize >= sent.length) assert.ok(pages.length > 1, "the walk crosses windows");
      const walked = pages.flat();
      const duplicates = walked.filter((id, i) => walked.indexOf(id) !== i);
      assert.deepEqual(duplicates, [], `no hit twice: ${names.of(duplicates)}`);
      assert.deepEqual([...walked].sort(), sent.map((m) => m.id).sort(), "every match, nothing else");
      // Windows are newest first: the busy conversation's burst (all sent after the quiet
      // ones) comes before every quiet conversation's match.
      const lastOften = Math.max(...often.map((m) => walked.indexOf(m.id)));
      const firstOnce = Math.min(...once.map((m) => walked.indexOf(m.id)));
      assert.ok(lastOften < firstOnce, "newer windows first");
    });
  }

  it("refuses a page token of an earlier release with INVALID_ARGUMENT instead of reading it", async () => {
    const first = await reader.search.searchMessages({ query: word, pageSize: 5 });
    const current = JSON.parse(Buffer.from(first.nextPageToken, "base64url").toString("utf8"));
    // The previous release's shape: the fingerprint and a bare [score, created, id].
    const old = Buffer.from(JSON.stringify({ k: "search", r: current.r, a: JSON.stringify([0.1, "1765000000000", sent[0]!.id]) })).toString("base64url");
    await assert.rejects(reader.search.searchMessages({ query: word, pageSize: 5, pageToken: old }), (error: unknown) => {
      const e = ConnectError.from(error);
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.rawMessage, /page_token/);
      return true;
    });
  });

  for (const order of [SearchOrder.RECENCY, SearchOrder.RELEVANCE]) {
    it(`applies every filter to it in ${orderName(order)} order`, async () => {
      const firstOften = often.reduce((min, m) => (ms(m.createdAt) < ms(min.createdAt) ? m : min));
      const cases: [Omit<SearchRequest, "order" | "pageSize">, Message[], string][] = [
        [{ query: word, conversationIds: [groups[0]!.id] }, often, "the busy conversation"],
        [{ query: word, conversationIds: [groups[1]!.id, groups[2]!.id] }, once.slice(0, 2), "two quiet conversations"],
        [{ query: `${word} -often` }, once, "an exclusion"],
        [{ query: `${word} once` }, once, "a second, rarer word"],
        [{ query: `"${word} often"` }, often, "a phrase"],
        [{ query: word, createdAfter: firstOften.createdAt }, often, "from the first busy message on"],
        [{ query: word, createdBefore: firstOften.createdAt }, once, "before the first busy message"],
        [{ query: word, senderId: sender }, sent, "the sender of all"],
        [{ query: word, senderId: "nobody-at-all" }, [], "a sender of none"],
        [{ query: word, conversationIds: [groups[0]!.id], createdBefore: firstOften.createdAt }, [], "the busy conversation before it was busy"],
      ];
      for (const [request, expected, what] of cases) {
        await expectHits(reader, { ...request, order, pageSize: 7 }, expected, what, names);
      }
    });
  }

  // Last: it deletes messages the tests above expect.
  it("keeps paging every remaining match exactly once when matches are deleted between pages (RELEVANCE)", async () => {
    const lifecycle = lifecycleOf(server.clientsFor(sender, "connect"));
    const walked: string[] = [];
    const deletedIds = new Set<string>();
    let pageToken = "";
    let pages = 0;
    do {
      const res = await reader.search.searchMessages({ query: word, order: SearchOrder.RELEVANCE, pageSize: 4, pageToken });
      for (const id of hitIds(res.hits)) assert.ok(!deletedIds.has(id), `a deleted match is not shown: ${names.of([id])}`);
      walked.push(...hitIds(res.hits));
      pageToken = res.nextPageToken;
      if (++pages === 3) {
        // Two matches already shown and two not yet, from the busy conversation.
        const seen = often.filter((m) => walked.includes(m.id)).slice(0, 2);
        const unseen = often.filter((m) => !walked.includes(m.id)).slice(0, 2);
        for (const m of [...seen, ...unseen]) {
          await lifecycle.delete(m.conversationId, m.seq);
          deletedIds.add(m.id);
        }
      }
    } while (pageToken && pages < 500);
    assert.equal(pageToken, "", "the walk ends");
    const duplicates = walked.filter((id, i) => walked.indexOf(id) !== i);
    assert.deepEqual(duplicates, [], `no hit twice: ${names.of(duplicates)}`);
    const missing = sent.filter((m) => !deletedIds.has(m.id) && !walked.includes(m.id)).map((m) => m.id);
    assert.deepEqual(missing, [], `every match not deleted is reached: missing ${names.of(missing)}`);
  });
});
