/**
 * Reactions (issue 4, "Reactions"): one emoji per user per message counts once, removing what is
 * not there does nothing, messages show counts and reacted_by_me, and the feed carries
 * reaction_added / reaction_removed with the count after the change.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { absentIdLike, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { assertNoneArrived, assertStoredEvent, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";

/** Reactions as comparable tuples, sorted by emoji (the order among equal counts is open). */
function summary(reactions: readonly ReactionSummary[]): Array<[string, bigint, boolean]> {
  return reactions.map((r) => [r.emoji, r.count, r.reactedByMe] as [string, bigint, boolean]).sort((x, y) => (x[0] < y[0] ? -1 : 1));
}

function assertMostUsedFirst(reactions: readonly ReactionSummary[]): void {
  for (let i = 1; i < reactions.length; i++) {
    assert.ok(reactions[i - 1]!.count >= reactions[i]!.count, `reactions are most used first: ${JSON.stringify(summary(reactions), (_k, v) => (typeof v === "bigint" ? Number(v) : v))}`);
  }
}

const reactionOf = (kind: "reactionAdded" | "reactionRemoved", conversationId: string, seq: bigint, emoji: string, userId?: string) =>
  (e: Event) =>
    e.conversationId === conversationId && e.kind.case === kind && e.kind.value.messageSeq === seq && e.kind.value.emoji === emoji &&
    (userId === undefined || e.kind.value.userId === userId);

describe("reactions", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(userId: string, protocol: Protocol): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { label: `${userId}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("counts a user's emoji once, removes idempotently, shows counts and reacted_by_me, and streams each change with its count", async () => {
        const [a, b, c] = await newUsers(server, 3, "react");
        const [A, B, C] = [a!, b!, c!].map((id) => server.clientsFor(id, protocol)) as [
          ReturnType<TestServer["clientsFor"]>, ReturnType<TestServer["clientsFor"]>, ReturnType<TestServer["clientsFor"]>,
        ];
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "react to me");
        const other = await sendText(A, conv.id, "leave me alone");
        const fa = await live(a!, protocol);
        const at = { conversationId: conv.id, seq: m.seq };

        const first = await B.messages.addReaction({ ...at, emoji: "👍" });
        assert.equal(first.added, true, "the first reaction is added");
        assert.deepEqual(summary(first.reactions), [["👍", 1n, true]]);
        const { event: added } = await fa.waitForEvent(reactionOf("reactionAdded", conv.id, m.seq, "👍", b), "reaction_added(👍 by b)");
        assertStoredEvent(added, conv.id, b);
        assert.equal(added.kind.case === "reactionAdded" && added.kind.value.count, 1n, "count after the change");

        const again = await B.messages.addReaction({ ...at, emoji: "👍" });
        assert.equal(again.added, false, "reacting again with the same emoji is not a second reaction");
        assert.deepEqual(summary(again.reactions), [["👍", 1n, true]], "still counted once");

        const byC = await C.messages.addReaction({ ...at, emoji: "👍" });
        assert.equal(byC.added, true);
        const heart = await C.messages.addReaction({ ...at, emoji: "❤️" });
        assert.deepEqual(summary(heart.reactions), [["❤️", 1n, true], ["👍", 2n, true]], "c's view after two reactions");
        assertMostUsedFirst(heart.reactions);
        await fa.waitForEvent(
          (e) => reactionOf("reactionAdded", conv.id, m.seq, "👍", c)(e) && e.kind.case === "reactionAdded" && e.kind.value.count === 2n,
          "reaction_added(👍 by c, count 2)",
        );
        await fa.waitForEvent(reactionOf("reactionAdded", conv.id, m.seq, "❤️", c), "reaction_added(❤️ by c)");

        const seenByA = (await A.messages.getMessage(at)).message!;
        assert.deepEqual(summary(seenByA.reactions), [["❤️", 1n, false], ["👍", 2n, false]], "a reacted with nothing");
        assertMostUsedFirst(seenByA.reactions);
        const listedByB = await listAllForward(B, conv.id);
        assert.deepEqual(summary(listedByB.find((x) => x.seq === m.seq)!.reactions), [["❤️", 1n, false], ["👍", 2n, true]], "b's view in ListMessages");
        assert.deepEqual(listedByB.find((x) => x.seq === other.seq)!.reactions, [], "another message has no reactions");

        const removed = await B.messages.removeReaction({ ...at, emoji: "👍" });
        assert.equal(removed.removed, true);
        assert.deepEqual(summary(removed.reactions), [["❤️", 1n, false], ["👍", 1n, false]]);
        const { event: gone } = await fa.waitForEvent(reactionOf("reactionRemoved", conv.id, m.seq, "👍", b), "reaction_removed(👍 by b)");
        assertStoredEvent(gone, conv.id, b);
        assert.equal(gone.kind.case === "reactionRemoved" && gone.kind.value.count, 1n, "count after the removal");

        const removedAgain = await B.messages.removeReaction({ ...at, emoji: "👍" });
        assert.equal(removedAgain.removed, false, "removing twice is a no-op");
        const neverThere = await B.messages.removeReaction({ ...at, emoji: "🎉" });
        assert.equal(neverThere.removed, false, "removing a reaction that never existed is a no-op");
        assert.deepEqual(summary(neverThere.reactions), [["❤️", 1n, false], ["👍", 1n, false]]);

        // The last ❤️ goes: the emoji disappears from the summary. Its event is also the fence
        // for the no-ops above, which must not have produced events.
        const last = await C.messages.removeReaction({ ...at, emoji: "❤️" });
        assert.deepEqual(summary(last.reactions), [["👍", 1n, true]], "an emoji nobody uses any more is not listed");
        const { event: heartGone } = await fa.waitForEvent(reactionOf("reactionRemoved", conv.id, m.seq, "❤️", c), "reaction_removed(❤️ by c)");
        assert.equal(heartGone.kind.case === "reactionRemoved" && heartGone.kind.value.count, 0n, "count 0 after the last removal");
        const fromB = fa.events.filter(
          (e) => (e.kind.case === "reactionAdded" || e.kind.case === "reactionRemoved") && e.kind.value.userId === b,
        );
        assert.deepEqual(
          fromB.map((e) => e.kind.case),
          ["reactionAdded", "reactionRemoved"],
          "b's repeated add and repeated/absent removes produced no events",
        );
        assertNoneArrived(
          fa,
          (f) => f.case === "event" && (f.value.kind.case === "reactionAdded" || f.value.kind.case === "reactionRemoved") && f.value.conversationId !== conv.id,
          "reaction events of another conversation",
        );
        assert.deepEqual(summary((await B.messages.getMessage(at)).message!.reactions), [["👍", 1n, false]]);
      });

      it("accepts one emoji of up to 32 bytes, including sequences, and rejects empty, longer or several", async () => {
        const [a, b, c] = await newUsers(server, 3, "emoji");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "emoji test");
        const at = { conversationId: conv.id, seq: m.seq };
        for (const emoji of ["👍🏽", "🇫🇷", "👨‍👩‍👧‍👦", "❤️"]) {
          const res = await A.messages.addReaction({ ...at, emoji });
          assert.equal(res.added, true, `${emoji} (${Buffer.byteLength(emoji)} bytes) is one emoji`);
        }
        for (const emoji of ["", "👍".repeat(9), "👍👍", "👨‍👩‍👧‍👦👨‍👩‍👧‍👦"]) {
          await expectInvalidArgument(A.messages.addReaction({ ...at, emoji }), "emoji");
        }
        await expectInvalidArgument(A.messages.removeReaction({ ...at, emoji: "" }), "emoji");
        await expectInvalidArgument(A.messages.removeReaction({ ...at, emoji: "👍".repeat(9) }), "emoji");
        const after = (await A.messages.getMessage(at)).message!;
        assert.equal(after.reactions.length, 4, "only the four valid reactions were stored");
      });

      it("answers NOT_FOUND to a non-member, for a missing message and for an unknown conversation", async () => {
        const [a, b, c, x] = await newUsers(server, 4, "react-nf");
        const A = server.clientsFor(a!, protocol);
        const X = server.clientsFor(x!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const m = await sendText(A, conv.id, "members only");
        const at = { conversationId: conv.id, seq: m.seq, emoji: "👍" };
        await expectCode(X.messages.addReaction(at), Code.NotFound);
        await expectCode(X.messages.removeReaction(at), Code.NotFound);
        await expectCode(A.messages.addReaction({ ...at, seq: 999n }), Code.NotFound);
        await expectCode(A.messages.removeReaction({ ...at, seq: 999n }), Code.NotFound);
        await expectCode(A.messages.addReaction({ ...at, conversationId: absentIdLike(conv.id) }), Code.NotFound);
        assert.deepEqual((await A.messages.getMessage({ conversationId: conv.id, seq: m.seq })).message!.reactions, []);
      });
    });
  }

  it("keeps exact counts and reacted_by_me when 200 users react to one message at once (each twice), then half take it back", async function () {
    this.timeout(60_000);
    const N = 200;
    const [a, ...reactors] = await newUsers(server, N + 1, "storm");
    const A = server.clientsFor(a!, "grpc");
    const conv = await createGroup(A, reactors, "storm");
    const m = await sendText(A, conv.id, "the popular one");
    const at = { conversationId: conv.id, seq: m.seq, emoji: "🔥" };
    const fa = await live(a!, "grpc");
    const clientsOf = (id: string, i: number) => server.clientsFor(id, i % 2 === 0 ? "grpc" : "connect");

    // Every reactor sends AddReaction twice at the same moment: exactly one of the two adds.
    const adds = await Promise.all(
      reactors.map(async (id, i) => {
        const c = clientsOf(id, i);
        const both = await Promise.all([c.messages.addReaction(at), c.messages.addReaction(at)]);
        return both.filter((r) => r.added).length;
      }),
    );
    const wrongAdds = reactors.filter((_, i) => adds[i] !== 1).map((id, i) => `${id}: ${adds[i]} added`);
    assert.deepEqual(wrongAdds, [], "each user's two concurrent adds: exactly one reports added=true");
    const seenByA = (await A.messages.getMessage({ conversationId: conv.id, seq: m.seq })).message!;
    assert.deepEqual(summary(seenByA.reactions), [["🔥", BigInt(N), false]], "the final count is exact");

    const isAdd = reactionOf("reactionAdded", conv.id, m.seq, "🔥");
    await fa.waitUntil(() => fa.events.filter(isAdd).length >= N, `${N} reaction_added events`, 20_000);
    const addEvents = fa.events.filter(isAdd);
    const addUsers = addEvents.map((e) => (e.kind.case === "reactionAdded" ? e.kind.value.userId : ""));
    assert.equal(new Set(addUsers).size, N, "one reaction_added per reacting user");
    assert.equal(addEvents.length, N, "no reaction_added for the duplicate adds");
    const lastAdd = addEvents.at(-1)!;
    assert.equal(
      lastAdd.kind.case === "reactionAdded" && lastAdd.kind.value.count,
      BigInt(N),
      `the last reaction_added in arrival order carries the final count, so a client applying events converges; counts seen: ${summarizeCounts(addEvents)}`,
    );

    // Half take it back, again twice each at the same moment.
    const leaving = reactors.slice(0, N / 2);
    const removes = await Promise.all(
      leaving.map(async (id, i) => {
        const c = clientsOf(id, i + 1);
        const both = await Promise.all([c.messages.removeReaction(at), c.messages.removeReaction(at)]);
        return both.filter((r) => r.removed).length;
      }),
    );
    assert.deepEqual(
      leaving.filter((_, i) => removes[i] !== 1),
      [],
      "each user's two concurrent removes: exactly one reports removed=true",
    );
    const staying = new Set(reactors.slice(N / 2));
    const views = await Promise.all(
      reactors.map(async (id, i) => {
        const msg = (await clientsOf(id, i).messages.getMessage({ conversationId: conv.id, seq: m.seq })).message!;
        return { id, reactions: summary(msg.reactions) };
      }),
    );
    const wrongViews = views
      .filter((v) => JSON.stringify(v.reactions, big) !== JSON.stringify([["🔥", BigInt(N / 2), staying.has(v.id)]], big))
      .map((v) => `${v.id}: ${JSON.stringify(v.reactions, big)}`);
    assert.deepEqual(wrongViews.slice(0, 10), [], `every user sees count ${N / 2} and their own reacted_by_me`);

    const isRemove = reactionOf("reactionRemoved", conv.id, m.seq, "🔥");
    await fa.waitUntil(() => fa.events.filter(isRemove).length >= N / 2, `${N / 2} reaction_removed events`, 20_000);
    const removeEvents = fa.events.filter(isRemove);
    assert.equal(removeEvents.length, N / 2, "one reaction_removed per user who took it back");
    const lastRemove = removeEvents.at(-1)!;
    assert.equal(
      lastRemove.kind.case === "reactionRemoved" && lastRemove.kind.value.count,
      BigInt(N / 2),
      `the last reaction_removed carries the final count; counts seen: ${summarizeCounts(removeEvents)}`,
    );
  });
});

function big(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? Number(v) : v;
}

function summarizeCounts(events: Event[]): string {
  const counts = events.map((e) => (e.kind.case === "reactionAdded" || e.kind.case === "reactionRemoved" ? Number(e.kind.value.count) : -1));
  const distinct = new Set(counts).size;
  return `${counts.length} events, ${distinct} distinct counts, last five ${JSON.stringify(counts.slice(-5))}`;
}
