/**
 * Analytics: the consumer's hourly and daily figures equal counts over the raw tables after a
 * mixed workload; a rebuild computes the same and the consumer continues after it; who may
 * read what; bad input. (Redelivery: redelivery.test.ts; two nodes:
 * test/operations/analytics.test.ts.)
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Granularity } from "../../gen/parley/v1/analytics_service_pb.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { eventually } from "../helpers/feed.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import {
  bucketOf,
  conversationFigures,
  mixedWorkload,
  rangeAroundNow,
  rawConversationFigures,
  startAnalyticsServer,
  storyFigures,
  waitForFigures,
  type Expected,
} from "./support.ts";

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

describe("analytics", function () {
  this.timeout(60_000);
  let server: TestServer;
  let operator: Clients;
  let workload: Expected;

  before(async function () {
    this.timeout(60_000);
    server = await startAnalyticsServer();
    operator = server.clientsFor("analytics-operator", "grpc", { roles: ["operator"] });
    workload = await mixedWorkload(server);
  });
  after(async () => server?.stop());

  for (const protocol of MAIN_PROTOCOLS) {
    it(`rolls a mixed workload up into figures equal to what it did (${protocol})`, async () => {
      await waitForFigures(server.clientsFor(workload.admin, protocol), workload);
    });
  }

  it("equals counts taken from the raw tables, bucket by bucket (PostgreSQL)", async function () {
    const url = server.env.DATABASE_URL;
    if (!url) this.skip();
    await waitForFigures(operator, workload, operator);
    for (const unit of ["hour", "day"] as const) {
      const raw = await rawConversationFigures(url, workload.conversationId, unit);
      assert.deepEqual(await conversationFigures(operator, workload.conversationId, unit), raw, `${unit}ly figures`);
    }
  });

  it("buckets by UTC hour and day: a day's messages are its hours' summed, a sender active once a day", async () => {
    await waitForFigures(operator, workload, operator);
    const hours = await conversationFigures(operator, workload.conversationId, "hour");
    const days = await conversationFigures(operator, workload.conversationId, "day");
    for (const start of hours.keys()) assert.equal(start % HOUR_MS, 0, "hour buckets start on the hour");
    for (const start of days.keys()) assert.equal(start % DAY_MS, 0, "day buckets start at 00:00 UTC");
    for (const [day, figures] of days) {
      const inDay = [...hours].filter(([start]) => bucketOf(start, "day") === day).map(([, f]) => f);
      assert.equal(figures.messages, inDay.reduce((n, f) => n + f.messages, 0));
      assert.equal(figures.reactions, inDay.reduce((n, f) => n + f.reactions, 0));
      assert.equal(figures.activeMembers, workload.messages.day.get(day)!.senders.size, "distinct senders of the day");
    }
  });

  it("answers the deployment's figures to operators: the sums over conversations and authors", async () => {
    await waitForFigures(operator, workload, operator);
    const res = await operator.analytics.getDeploymentAnalytics({ range: rangeAroundNow("day") });
    const messages = res.buckets.reduce((n, b) => n + Number(b.messages), 0);
    // At least this workload's (other tests of this file write on the same server).
    assert.ok(messages >= [...workload.messages.day.values()].reduce((n, b) => n + b.messages, 0) + 1, "the group's messages and the story reply");
    assert.ok(res.buckets.every((b) => Number(b.activeUsers) >= 1));
    assert.ok(res.buckets.reduce((n, b) => n + Number(b.storiesPosted), 0) >= 2);
    assert.ok(res.buckets.reduce((n, b) => n + Number(b.storyViews), 0) >= 3);
  });

  it("RebuildAnalytics recomputes the same figures, and the consumer carries on exactly after it", async () => {
    await waitForFigures(operator, workload, operator);
    const before = {
      conversation: await conversationFigures(operator, workload.conversationId, "hour"),
      stories: await storyFigures(operator, workload.author, "day"),
      deployment: (await operator.analytics.getDeploymentAnalytics({ range: rangeAroundNow("hour") })).buckets,
    };
    const rebuilt = await operator.analytics.rebuildAnalytics({});
    assert.ok(rebuilt.hourlyRows >= 2n, "hourly rows of the group and the author at least");
    assert.deepEqual(await conversationFigures(operator, workload.conversationId, "hour"), before.conversation);
    assert.deepEqual(await storyFigures(operator, workload.author, "day"), before.stories);
    assert.deepEqual((await operator.analytics.getDeploymentAnalytics({ range: rangeAroundNow("hour") })).buckets, before.deployment);

    const admin = server.clientsFor(workload.admin);
    const more = [await sendText(admin, workload.conversationId, "after"), await sendText(admin, workload.conversationId, "rebuild")];
    await admin.messages.addReaction({ conversationId: workload.conversationId, seq: more[0]!.seq, emoji: "👀" });
    await eventually(async () => {
      const now = await conversationFigures(operator, workload.conversationId, "day");
      const sum = (m: Map<number, { messages: number; reactions: number }>, k: "messages" | "reactions") => [...m.values()].reduce((n, f) => n + f[k], 0);
      const was = await Promise.resolve(before.conversation);
      return sum(now, "messages") === sum(was, "messages") + 2 && sum(now, "reactions") === sum(was, "reactions") + 1;
    }, "two more messages and one more reaction counted, once");
  });

  it("a rebuild while messages are being sent neither loses nor double-counts one", async () => {
    const [admin, b, c] = (await newUsers(server, 3, "race")) as [string, string, string];
    const group = await createGroup(server.clientsFor(admin), [b, c], "race");
    const senders = [admin, b, c].map((user) => server.clientsFor(user));
    const sending = Promise.all(senders.map(async (clients, i) => {
      for (let n = 0; n < 20; n++) await sendText(clients, group.id, `${i}-${n}`);
    }));
    for (let i = 0; i < 3; i++) await operator.analytics.rebuildAnalytics({});
    await sending;
    await operator.analytics.rebuildAnalytics({});
    await sendText(senders[0]!, group.id, "after the last rebuild");
    await eventually(async () => {
      const days = [...(await conversationFigures(operator, group.id, "day")).values()];
      return days.reduce((n, f) => n + f.messages, 0) === 61;
    }, "61 messages counted");
    await new Promise((r) => setTimeout(r, 500));
    const days = [...(await conversationFigures(operator, group.id, "day")).values()];
    assert.equal(days.reduce((n, f) => n + f.messages, 0), 61, "and no more");
  });

  describe("who may read what", () => {
    it("a conversation's figures: its admins and operators; members and strangers get NOT_FOUND", async () => {
      const range = rangeAroundNow("hour");
      const conversationId = workload.conversationId;
      await server.clientsFor(workload.admin, "connect").analytics.getConversationAnalytics({ conversationId, range });
      await operator.analytics.getConversationAnalytics({ conversationId, range });
      await expectCode(server.clientsFor(workload.members[0]!).analytics.getConversationAnalytics({ conversationId, range }), Code.NotFound);
      await expectCode(server.clientsFor("analytics-stranger").analytics.getConversationAnalytics({ conversationId, range }), Code.NotFound);
      await expectCode(operator.analytics.getConversationAnalytics({ conversationId: crypto.randomUUID(), range }), Code.NotFound);
    });

    it("story figures: the author's own, anyone's for operators; another's is PERMISSION_DENIED", async () => {
      const range = rangeAroundNow("day");
      const own = await server.clientsFor(workload.author).analytics.getStoryAnalytics({ range });
      assert.ok(own.buckets.length > 0, "the author's own figures (author_id empty)");
      assert.deepEqual((await operator.analytics.getStoryAnalytics({ authorId: workload.author, range })).buckets, own.buckets);
      await expectCode(server.clientsFor(workload.members[0]!).analytics.getStoryAnalytics({ authorId: workload.author, range }), Code.PermissionDenied);
      await expectCode(operator.analytics.getStoryAnalytics({ authorId: "nobody-by-that-name", range }), Code.NotFound);
    });

    it("deployment figures and rebuilds are for operators only, refused before the input is read", async () => {
      const user = server.clientsFor(workload.admin);
      await expectCode(user.analytics.getDeploymentAnalytics({}), Code.PermissionDenied);
      await expectCode(user.analytics.getDeploymentAnalytics({ range: rangeAroundNow("hour") }), Code.PermissionDenied);
      await expectCode(user.analytics.rebuildAnalytics({}), Code.PermissionDenied);
    });
  });

  describe("bad input: INVALID_ARGUMENT on every read", () => {
    const now = Date.now();
    const bad = [
      { what: "no range", range: undefined, field: "range" },
      { what: "no from", range: { to: timestampFromMs(now), granularity: Granularity.HOUR }, field: "range.from" },
      { what: "no to", range: { from: timestampFromMs(now), granularity: Granularity.HOUR }, field: "range.to" },
      { what: "from = to", range: { from: timestampFromMs(now), to: timestampFromMs(now), granularity: Granularity.HOUR }, field: "range.to" },
      { what: "to before from", range: { from: timestampFromMs(now), to: timestampFromMs(now - HOUR_MS), granularity: Granularity.DAY }, field: "range.to" },
      { what: "32 days of hours", range: { from: timestampFromMs(now), to: timestampFromMs(now + 32 * DAY_MS), granularity: Granularity.HOUR }, field: "range.to" },
      { what: "367 days of days", range: { from: timestampFromMs(now), to: timestampFromMs(now + 367 * DAY_MS), granularity: Granularity.DAY }, field: "range.to" },
      { what: "an unknown granularity", range: { from: timestampFromMs(now), to: timestampFromMs(now + HOUR_MS), granularity: 7 as Granularity }, field: "range.granularity" },
      { what: "nanos out of range", range: { from: { seconds: BigInt(now / 1000 | 0), nanos: 2_000_000_000 }, to: timestampFromMs(now + HOUR_MS) }, field: "range.from" },
    ];
    for (const { what, range, field } of bad) {
      it(`${what}`, async () => {
        const admin = server.clientsFor(workload.admin);
        await expectInvalidArgument(admin.analytics.getConversationAnalytics({ conversationId: workload.conversationId, range }), field);
        await expectInvalidArgument(admin.analytics.getStoryAnalytics({ range }), field);
        await expectInvalidArgument(operator.analytics.getDeploymentAnalytics({ range }), field);
      });
    }

    it("a conversation id that is not a UUID, an author id that is too long", async () => {
      const range = rangeAroundNow("hour");
      await expectInvalidArgument(operator.analytics.getConversationAnalytics({ conversationId: "not-a-uuid", range }), "conversation_id");
      await expectInvalidArgument(operator.analytics.getStoryAnalytics({ authorId: "x".repeat(1000), range }), "author_id");
    });

    it("the longest ranges allowed are answered: 31 days of hours, 366 of days", async () => {
      const from = bucketOf(now, "day") - 15 * DAY_MS;
      await operator.analytics.getDeploymentAnalytics({ range: { from: timestampFromMs(from), to: timestampFromMs(from + 31 * DAY_MS), granularity: Granularity.HOUR } });
      await operator.analytics.getDeploymentAnalytics({ range: { from: timestampFromMs(from), to: timestampFromMs(from + 366 * DAY_MS), granularity: Granularity.DAY } });
    });
  });
});

describe("analytics with ANALYTICS=off", function () {
  this.timeout(60_000);
  let server: TestServer;
  before(async () => (server = await startAnalyticsServer({ ANALYTICS: "off" })));
  after(async () => server?.stop());

  it("counts nothing until an operator rebuilds", async () => {
    const [admin, member, third] = (await newUsers(server, 3, "off")) as [string, string, string];
    const clients = server.clientsFor(admin);
    const group = await createGroup(clients, [member, third]);
    await sendText(clients, group.id, "one");
    await sendText(server.clientsFor(member), group.id, "two");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await conversationFigures(clients, group.id, "day")).size, 0, "no consumer, no figures");
    await server.clientsFor("off-operator", "grpc", { roles: ["operator"] }).analytics.rebuildAnalytics({});
    const figures = [...(await conversationFigures(clients, group.id, "day")).values()];
    assert.deepEqual(figures.reduce((n, f) => ({ messages: n.messages + f.messages, activeMembers: Math.max(n.activeMembers, f.activeMembers) }), { messages: 0, activeMembers: 0 }), { messages: 2, activeMembers: 2 });
  });
});
