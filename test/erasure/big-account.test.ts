/**
 * Erasing an account with a few thousand messages: it goes in batches (a transaction each), and
 * every message becomes a tombstone, search forgets all of them, unread counters stay right,
 * and the members' live streams get a message_deleted for each.
 */
import assert from "node:assert/strict";
import { newUsers, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { createGroup, listAllConversations, listAllForward, sendText } from "../helpers/fixtures.ts";
import { eventually, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertErased, marker, sendMany } from "./support.ts";

const MESSAGES = 3_000;

describe("DeleteAccount of a big account", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    // A stream deep enough to take every deletion live (a shallower one would resume from the log).
    server = await startRealtimeServer({ FEED_BUFFER_EVENTS: String(MESSAGES * 2) });
  });
  after(async () => {
    for (const feed of feeds.splice(0)) feed.close();
    await server?.stop();
  });

  it(`erases ${MESSAGES} messages completely, in batches, and members' streams see every deletion`, async function () {
    this.timeout(180_000);
    const [e, a, b] = await newUsers(server, 3, "big");
    const E = server.clientsFor(e!, "grpc");
    const A = server.clientsFor(a!, "connect");
    const word = marker("bulk");
    const group = await createGroup(E, [a!, b!]);
    await sendMany(E, group.id, Array.from({ length: MESSAGES }, (_, i) => `${word} number ${i}`));
    const kept = await sendText(A, group.id, `a's own ${word}`);
    await eventually(async () => (await A.search.searchMessages({ query: word, pageSize: 5 })).hits.length === 5, "search finds the words before");
    const live = await openLiveFeed(A, { label: "a/connect" });
    feeds.push(live);
    const unreadBefore = (await listAllConversations(A)).find((c) => c.id === group.id)?.unreadCount;
    assert.equal(unreadBefore, BigInt(MESSAGES), "a has not read them");

    const started = performance.now();
    const res = await E.users.deleteAccount({ confirmUserId: e! });
    const tookMs = performance.now() - started;
    console.log(`      erased ${MESSAGES} messages in ${Math.round(tookMs)} ms (${Math.round(MESSAGES / (tookMs / 1000))} msg/s, the ~1.25 s gate settle included)`);
    assert.equal(res.messagesErased, BigInt(MESSAGES));

    const history = await listAllForward(A, group.id);
    assert.equal(history.length, MESSAGES + 1);
    for (const m of history.slice(0, MESSAGES)) assertErased(m, e!, `seq ${m.seq}`);
    assert.equal(history.at(-1)?.content.value, `a's own ${word}`);
    const hits = (await A.search.searchMessages({ query: word, pageSize: 100 })).hits;
    assert.deepEqual(hits.map((h) => h.message?.seq), [kept.seq], "search finds only a's message");
    assert.equal((await listAllConversations(A)).find((c) => c.id === group.id)?.unreadCount, 0n, "tombstones no longer count as unread");
    assert.equal((await listAllConversations(server.clientsFor(b!, "grpc"))).find((c) => c.id === group.id)?.unreadCount, 1n, "b: only a's message");

    const deleted = () => new Set(live.events.flatMap((ev) => (ev.conversationId === group.id && ev.kind.case === "messageDeleted" ? [ev.kind.value.messageSeq] : [])));
    await live.waitUntil(() => deleted().size === MESSAGES, `${MESSAGES} message_deleted events`, 60_000);
  });
});
