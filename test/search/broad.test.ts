/**
 * A very common word (issue 7, "a mix of selective and broad queries"): once PostgreSQL's
 * statistics say a word is in a large share of all messages, search may answer it by
 * another plan — but the user must still be able to page through every match, in either
 * order, and every filter still applies exactly. PostgreSQL mode only: it needs ANALYZE on the server's database (what autovacuum
 * does on its own in production).
 */
import assert from "node:assert/strict";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { clockPast, createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectHits, hitIds, Names, orderName, SEARCH_DEADLINE_MS, searchAll, uniqueWord, type SearchRequest } from "./helpers.ts";
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
    server = await startRealtimeServer();
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
});
