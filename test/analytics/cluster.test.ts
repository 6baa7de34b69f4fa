/**
 * Issue 17: "Analytics equal raw counts after a mixed workload across two nodes". Both nodes
 * run the consumers and share the durable "analytics" consumer, so each takes some of the
 * batches, out of order with the other; every call of the workload goes to the other node than
 * the one before.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { conversationFigures, mixedWorkload, rangeAroundNow, rawConversationFigures, storyFigures, waitForFigures } from "./support.ts";

describe("analytics across two nodes (PostgreSQL + NATS)", function () {
  this.timeout(90_000);
  let cluster: Cluster;
  let dataDir: string;

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    // One media directory: a story's upload and its creation may land on different nodes.
    dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-analytics-cluster-"));
    cluster = await startCluster(2, { DATA_DIR: dataDir });
  });
  after(async () => {
    await cluster?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it("equals the raw counts after a mixed workload, on both nodes, and a rebuild equals the consumer", async () => {
    const [a, b] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0]];
    const expected = await mixedWorkload(a, (user, i) => (i % 2 === 0 ? a : b).clientsFor(user));
    const operator = a.clientsFor("cluster-operator", "grpc", { roles: ["operator"] });
    await waitForFigures(a.clientsFor(expected.admin), expected, operator);
    await waitForFigures(b.clientsFor(expected.admin, "connect"), expected);

    const consumer = {
      hour: await conversationFigures(operator, expected.conversationId, "hour"),
      day: await conversationFigures(operator, expected.conversationId, "day"),
      stories: await storyFigures(operator, expected.author, "hour"),
      deployment: (await operator.analytics.getDeploymentAnalytics({ range: rangeAroundNow("hour") })).buckets,
    };
    for (const unit of ["hour", "day"] as const) {
      assert.deepEqual(consumer[unit], await rawConversationFigures(cluster.databaseUrl, expected.conversationId, unit), `${unit}ly figures equal the raw tables`);
    }
    await b.clientsFor("cluster-operator", "connect", { roles: ["operator"] }).analytics.rebuildAnalytics({});
    assert.deepEqual(
      {
        hour: await conversationFigures(operator, expected.conversationId, "hour"),
        day: await conversationFigures(operator, expected.conversationId, "day"),
        stories: await storyFigures(operator, expected.author, "hour"),
        deployment: (await operator.analytics.getDeploymentAnalytics({ range: rangeAroundNow("hour") })).buckets,
      },
      consumer,
      "a rebuild computes what the consumer counted",
    );
  });
});
