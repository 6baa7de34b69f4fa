/**
 * Erasure across nodes: an erasure run by one node keeps the user from writing through every
 * other node, members on other nodes see the deletions live, and afterwards the id signs in
 * again as a new account through a node that knew the old one.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { newUsers } from "../helpers/test-server.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { expectCode } from "../helpers/expect.ts";
import { createGroup, listAllForward, ms, sendText } from "../helpers/fixtures.ts";
import { eventually, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { assertErased, holdOnce, sendMany } from "./support.ts";

const MESSAGES = 1_200;

describe("DeleteAccount on a cluster", function () {
  let cluster: Cluster;
  const hold = holdOnce();
  const feeds: Feed[] = [];
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    cluster = await startCluster(2, {}, { appOptionsFor: (index) => (index === 0 ? { erasureFaults: hold.faults } : undefined) });
  });
  after(async () => {
    for (const feed of feeds.splice(0)) feed.close();
    await cluster?.stop();
  });

  it("gates the user's writes on every node, streams on other nodes see the deletions, and the id starts afresh anywhere", async function () {
    this.timeout(120_000);
    const [eraser, other] = cluster.nodes;
    const [e, a, b] = await newUsers(other!, 3, "cluster");
    const viaOther = other!.clientsFor(e!, "grpc");
    const group = await createGroup(viaOther, [a!, b!]);
    await sendMany(viaOther, group.id, Array.from({ length: MESSAGES }, (_, i) => `clustered ${i}`));
    const before = (await viaOther.users.getMe({})).user!;
    const live = await openLiveFeed(other!.clientsFor(a!, "connect"), { label: "a@other" });
    feeds.push(live);

    const call = eraser!.clientsFor(e!, "connect").users.deleteAccount({ confirmUserId: e! });
    await hold.held;
    await expectCode(sendText(viaOther, group.id, "through the other node"), Code.FailedPrecondition);
    hold.go();
    assert.equal((await call).messagesErased, BigInt(MESSAGES));

    await live.waitUntil(
      () => live.events.filter((ev) => ev.conversationId === group.id && ev.kind.case === "messageDeleted").length === MESSAGES,
      `${MESSAGES} message_deleted on the other node`,
      30_000,
    );
    for (const m of await listAllForward(other!.clientsFor(a!, "grpc"), group.id)) assertErased(m, e!, `seq ${m.seq}`);
    // The other node had the id as a known user: it must notice the row went and create a new one.
    const after = (await viaOther.users.getMe({})).user!;
    assert.ok(ms(after.createdAt) > ms(before.createdAt), "a new account");
    // The other node lifts its gate at its next poll (twice a second); then the new account writes there.
    let fresh: string | undefined;
    await eventually(async () => {
      fresh = (await createGroup(viaOther, [a!, b!]).catch(() => undefined))?.id;
      return fresh !== undefined;
    }, "the other node lets the new account write", 5_000);
    assert.equal((await sendText(viaOther, fresh!, "new account")).seq, 1n);
  });
});
