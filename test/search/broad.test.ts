/**
 * A very common word (issue 7, "a mix of selective and broad queries"): once PostgreSQL's
 * statistics say a word is in a large share of all messages, search may answer it by
 * another plan — but the user must still be able to page through every match, in either
 * order. PostgreSQL mode only: it needs ANALYZE on the server's database (what autovacuum
 * does on its own in production).
 */
import assert from "node:assert/strict";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import { newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { hitIds, Names, orderName, SEARCH_DEADLINE_MS, searchAll, uniqueWord } from "./helpers.ts";
import { analyzeSearchTable, searchRowsHolding } from "./search-table.ts";

describe("SearchMessages: a word in most messages", () => {
  let server: TestServer;
  let reader: Clients;
  const word = uniqueWord("bw");
  const sent: Message[] = [];
  const names = new Names();

  before(async function () {
    if (!process.env.DATABASE_URL) this.skip(); // ANALYZE needs the server's database
    this.timeout(120_000);
    // A server of its own, so the statistics are about this test's messages only, and no
    // search ran (and cached statistics) before ANALYZE.
    server = await startRealtimeServer();
    const [a, b, c] = await newUsers(server, 3, "broad");
    const A = server.clientsFor(a!, "connect");
    reader = server.clientsFor(b!, "grpc");
    // Twenty conversations; one of them holds most of the matches.
    const groups = await Promise.all(Array.from({ length: 20 }, (_, i) => createGroup(A, [b!, c!], `group ${i}`)));
    for (const group of groups.slice(1)) sent.push(await sendText(A, group.id, `${word} once in ${group.name}`));
    for (let burst = 0; burst < 6; burst++) {
      sent.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => sendText(A, groups[0]!.id, `${word} often ${burst * 10 + i}`)))));
    }
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
});
