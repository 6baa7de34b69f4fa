/**
 * Blind-index search through the SDK against the real server: ParleyClient.search and the
 * codec's blind queries find exactly the messages holding the word, in every blind-search
 * conversation of the user, and tokens made with another conversation's search key find nothing.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { BlindQuerySchema, SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import { newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { allLive, freshConversation, openDevice, sendAndStore, type E2eDevice } from "./support.ts";

describe("e2e client: blind search", function () {
  this.timeout(60_000);
  let server: TestServer;
  const devices: E2eDevice[] = [];
  let alice: E2eDevice;
  let bob: E2eDevice;
  let b: string;
  let orchard: string;
  let market: string;

  before(async () => {
    server = await startTestServer();
    const [a, bb, c] = await newUsers(server, 3, "blind");
    b = bb!;
    alice = await openDevice(server, a!);
    bob = await openDevice(server, b);
    devices.push(alice, bob, await openDevice(server, c!));
    await allLive(devices);
    orchard = (await alice.client.createConversation({ memberIds: [b, c!], name: "orchard", encrypted: true, blindSearch: true })).id;
    market = (await alice.client.createConversation({ memberIds: [b], encrypted: true, blindSearch: true })).id;
    await sendAndStore(alice, orchard, "Apples and pears");
    await sendAndStore(bob, orchard, "only pears today");
    await sendAndStore(alice, orchard, "pineapple is not an apple");
    await sendAndStore(alice, market, "APPLES at the market");
    // Bob's device holds the search keys once the distributions reached it.
    await bob.waitUntil(async () => (await bob.codec.blindQueries(await freshConversation(bob, market), "apples")).length > 0, "bob holds both search keys");
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await server?.stop();
  });

  it("finds the messages holding a whole word in every blind-search conversation, decrypted", async () => {
    const hits = await bob.client.search("apples");
    assert.deepEqual(hits.map((h) => h.message.text).sort(), ["APPLES at the market", "Apples and pears"]);
    assert.ok(hits.every((h) => h.message.error === undefined && h.message.encrypted));
    const pears = await alice.client.search("PEARS", { conversationIds: [orchard] });
    assert.deepEqual(pears.map((h) => h.message.text).sort(), ["Apples and pears", "only pears today"]);
    assert.deepEqual(await bob.client.search("appl"), [], "whole words only: no prefix matches");
  });

  it("finds them through codec.blindQueries and SearchMessages", async () => {
    const conversation = await freshConversation(alice, orchard);
    const blindQueries = await alice.codec.blindQueries(conversation, "pears");
    assert.ok(blindQueries.length >= 1);
    const { hits } = await alice.client.searchClient.searchMessages({ blindQueries, order: SearchOrder.RECENCY, pageSize: 20 });
    assert.deepEqual(hits.map((h) => h.message!.seq).sort(), [1n, 2n]);
  });

  it("finds nothing with tokens made by another conversation's search key", async () => {
    const [fromMarket] = await alice.codec.blindQueries(await freshConversation(alice, market), "apples");
    assert.ok(fromMarket, "a blind query for the market");
    const misdirected = create(BlindQuerySchema, { conversationId: orchard, keyEpoch: fromMarket.keyEpoch, tokens: fromMarket.tokens });
    const { hits } = await alice.client.searchClient.searchMessages({ blindQueries: [misdirected], pageSize: 20 });
    assert.deepEqual(hits, [], "the market's tokens find nothing in the orchard, although 'Apples' is there");
    const own = await alice.codec.blindQueries(await freshConversation(alice, orchard), "apples");
    assert.equal((await alice.client.searchClient.searchMessages({ blindQueries: own, pageSize: 20 })).hits.length, 1, "the orchard's own key does");
  });

  it("searches conversations the session has not touched since it started", async () => {
    // A new session of bob's device (same store: same keys), which hears only of the orchard.
    await bob.close();
    const again = await openDevice(server, b, { store: bob.store });
    devices.push(again);
    assert.equal(again.deviceId, bob.deviceId, "the store restored the same device");
    await allLive([again]);
    await sendAndStore(alice, orchard, "fresh apples");
    await again.waitUntil(() => again.messages(orchard).length > 0, "bob's new session got the orchard message");
    const hits = await again.client.search("apples");
    assert.deepEqual(hits.map((h) => h.message.text).sort(), ["APPLES at the market", "Apples and pears", "fresh apples"]);
  });
});
