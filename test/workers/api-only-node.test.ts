/**
 * CONSUMERS=off: an API-only node serves every call but runs none of the durable consumers, so
 * background work (here: search indexing) waits in JetStream until a node with consumers runs.
 */
import assert from "node:assert/strict";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { registerUsers, uniqueId } from "../helpers/test-server.ts";
import { searchAll, uniqueWord, waitForHits } from "../search/helpers.ts";

describe("API-only nodes (CONSUMERS=off)", function () {
  it("refuses CONSUMERS=off without NATS, since no other node could run the consumers", () => {
    assert.throws(() => loadConfig({ CONSUMERS: "off" }), (error: unknown) => error instanceof ConfigError && /CONSUMERS/.test(error.message));
    assert.equal(loadConfig({ CONSUMERS: "off", NATS_URL: "nats://127.0.0.1:4222" }).runConsumers, false);
    assert.equal(loadConfig({}).runConsumers, true);
  });

  describe("in a cluster", function () {
    let cluster: Cluster;
    before(async function () {
      if (!multiNodeAvailable()) this.skip();
      cluster = await startCluster(1);
    });
    after(async () => {
      await cluster?.stop();
    });

    it("leaves indexing to the consumer nodes: nothing is indexed while only the API-only node runs, and all of it once a consumer node starts", async () => {
      const apiOnly = await cluster.addNode({ CONSUMERS: "off" });
      const [alice, bob, carol] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol")];
      await registerUsers(apiOnly, [alice, bob, carol]);
      const A = apiOnly.clientsFor(alice);
      const { conversation } = await A.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob, carol], name: "api only" });
      const word = uniqueWord();

      const { message: first } = await A.messages.sendMessage({ conversationId: conversation!.id, clientMessageId: "m1", content: { case: "text", value: `first ${word}` } });
      await waitForHits(A, { query: word }, [first!], { what: "indexed by the consumer node while it runs" });

      await cluster.nodes[0]!.stop();
      const { message: second } = await A.messages.sendMessage({ conversationId: conversation!.id, clientMessageId: "m2", content: { case: "text", value: `second ${word}` } });
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      assert.deepEqual(
        (await searchAll(A, { query: word })).map((hit) => hit.message?.id),
        [first!.id],
        "the API-only node indexed nothing itself",
      );

      await cluster.addNode();
      await waitForHits(A, { query: word }, [first!, second!], { what: "the waiting work done by a new consumer node" });
    });
  });
});
