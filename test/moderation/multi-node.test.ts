/**
 * Moderation across nodes: two Parley nodes on one PostgreSQL and one NATS. A suspension or ban
 * made through node A ends the user's stream on node B, and node B refuses their writes within
 * a short time; a lift through A lets them back in on B; an operator's deletion through A reaches
 * members' streams on B. Needs DATABASE_URL and NATS; skipped otherwise.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ModerationAction, ReportReason, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { isMessage, openFeed, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import {
  assertAllEndedByRestriction,
  assertRestrictedError,
  eventuallyFailsWith,
  eventuallySucceeds,
  expectStreamRestricted,
  messageTarget,
  msOf,
  newOperator,
  report,
  secondsFromNow,
  subscribeStorm,
  type ExpectedRestriction,
} from "./support.ts";

/** How long another node may take to learn of a restriction or a lift. */
const PROPAGATION_MS = 5_000;

describe("moderation across nodes (PostgreSQL + NATS)", function () {
  let cluster: Cluster;
  let nodeA: TestServer;
  let nodeB: TestServer;
  const feeds: Feed[] = [];
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2);
    [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
  });
  const isolated: { close(): void }[] = [];
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
    for (const c of isolated.splice(0)) c.close();
  });
  /** Clients on a connection of their own (a second device), closed after the test. */
  function ownConnection<T extends { close(): void }>(clients: T): T {
    isolated.push(clients);
    return clients;
  }
  after(async function () {
    this.timeout(30_000);
    await cluster?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("a suspension through node A ends the user's stream on node B and B refuses their writes; a lift through A lets them back on B", async function () {
        this.timeout(60_000);
        const [user, peer, third] = await newUsers(nodeA, 3, "mnsusp");
        const onB = nodeB.clientsFor(user!, protocol);
        const conv = await createGroup(nodeA.clientsFor(peer!, protocol), [user!, third!]);
        await sendText(onB, conv.id, "hello from B");
        const feed = await openLiveFeed(onB, { label: `user@B/${protocol}` });
        feeds.push(feed);

        const op = newOperator(nodeA, protocol);
        const until = secondsFromNow(3600);
        const untilMs = msOf(until, "until");
        await op.clients.admin.restrictUser({ userId: user!, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "cluster-wide" });
        const expected: ExpectedRestriction = { userId: user!, kind: RestrictionKind.SUSPENDED, untilMs, reason: "cluster-wide" };

        await expectStreamRestricted(feed, { action: ModerationAction.SUSPEND, untilMs, reason: "cluster-wide" });
        const refused = await eventuallyFailsWith(() => sendText(onB, conv.id, "still here?"), Code.PermissionDenied, "SendMessage on node B", PROPAGATION_MS);
        assertRestrictedError(refused, expected, "SendMessage on node B");
        const sub = openFeed(onB, { label: `resubscribe@B/${protocol}` });
        feeds.push(sub);
        const end = await sub.ended("Subscribe on node B while suspended");
        assert.ok(end.error, "Subscribe on node B is refused");
        assertRestrictedError(end.error, expected, "Subscribe on node B");
        await onB.messages.listMessages({ conversationId: conv.id }); // reads still work on B

        assert.equal((await op.clients.admin.liftRestriction({ userId: user! })).lifted, true);
        await eventuallySucceeds(() => sendText(onB, conv.id, "back on B"), "SendMessage on node B after the lift", PROPAGATION_MS, 100);
        const back = await openLiveFeed(onB, { label: `back@B/${protocol}` });
        feeds.push(back);
        const m = await sendText(nodeA.clientsFor(peer!, protocol), conv.id, "welcome back");
        await back.waitForEvent(isMessage(conv.id, m.seq), "a message from A on the new stream on B");
      });

      it("a ban resolved through node A ends the streams on both nodes and B refuses reads too", async function () {
        this.timeout(60_000);
        const [user, reporter, third] = await newUsers(nodeA, 3, "mnban");
        const conv = await createGroup(nodeA.clientsFor(reporter!, protocol), [user!, third!]);
        const m = await sendText(nodeB.clientsFor(user!, protocol), conv.id, "awful");
        const onA = await openLiveFeed(nodeA.clientsFor(user!, protocol), { label: `user@A/${protocol}` });
        const onB = await openLiveFeed(ownConnection(nodeB.isolatedClientsFor(user!, protocol)), { label: `user@B/${protocol}` });
        feeds.push(onA, onB);
        const reportId = await report(nodeB.clientsFor(reporter!, protocol), messageTarget(conv.id, m.seq), ReportReason.VIOLENCE);
        const op = newOperator(nodeA, protocol);
        await op.clients.admin.resolveReport({ reportId, action: ModerationAction.BAN, note: "banned everywhere" });
        await Promise.all([onA, onB].map((f) => expectStreamRestricted(f, { action: ModerationAction.BAN, reason: "banned everywhere" })));
        const expected: ExpectedRestriction = { userId: user!, kind: RestrictionKind.BANNED, reason: "banned everywhere" };
        const refused = await eventuallyFailsWith(() => nodeB.clientsFor(user!, protocol).users.getMe({}), Code.PermissionDenied, "GetMe on node B", PROPAGATION_MS);
        assertRestrictedError(refused, expected, "GetMe on node B");
        await op.clients.admin.liftRestriction({ userId: user! });
      });

      it("no stream on node B outlives a suspension made through node A, even one opened while the news travels", async function () {
        this.timeout(60_000);
        const [user] = await newUsers(nodeA, 1, "mnrace");
        const onB = nodeB.clientsFor(user!, protocol);
        const before = await openLiveFeed(onB, { label: `before@B/${protocol}` });
        const cursor = before.lastCursor;
        before.close();
        const op = newOperator(nodeA, protocol);
        const until = secondsFromNow(600);
        const expected: ExpectedRestriction = { userId: user!, kind: RestrictionKind.SUSPENDED, untilMs: msOf(until, "until"), reason: "race" };
        const storm = await subscribeStorm(
          onB,
          () => op.clients.admin.restrictUser({ userId: user!, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "race" }),
          `storm@B/${protocol}`,
          cursor,
        );
        feeds.push(...storm);
        await assertAllEndedByRestriction(storm, expected, PROPAGATION_MS + 3_000);
        await op.clients.admin.liftRestriction({ userId: user! });
      });

      it("DELETE_CONTENT through node A reaches members' streams on node B as a moderated message_deleted", async () => {
        const [author, reporter, witness] = await newUsers(nodeA, 3, "mndel");
        const conv = await createGroup(nodeA.clientsFor(author!, protocol), [reporter!, witness!]);
        const m = await sendText(nodeA.clientsFor(author!, protocol), conv.id, "delete me");
        const fw = await openLiveFeed(nodeB.clientsFor(witness!, protocol), { label: `witness@B/${protocol}` });
        feeds.push(fw);
        const reportId = await report(nodeB.clientsFor(reporter!, protocol), messageTarget(conv.id, m.seq), ReportReason.SPAM);
        await newOperator(nodeA, protocol).clients.admin.resolveReport({ reportId, action: ModerationAction.DELETE_CONTENT });
        const { event } = await fw.waitForEvent(
          (e) => e.conversationId === conv.id && e.kind.case === "messageDeleted" && e.kind.value.messageSeq === m.seq,
          "message_deleted on node B",
        );
        assert.equal(event.kind.case === "messageDeleted" && event.kind.value.moderated, true, "moderated=true");
        const got = (await nodeB.clientsFor(witness!, protocol).messages.getMessage({ conversationId: conv.id, seq: m.seq })).message!;
        assert.equal(got.content.case, undefined, "a tombstone on node B");
      });
    });
  }
});
