/**
 * Read state (issue 5, "Read state"): marking read tells the other members (read receipts),
 * and GetReadState gives every member's position so a client can show "seen by".
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createDirect, createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { assertNoneArrived, assertStoredEvent, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";

describe("Read receipts and GetReadState", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  const isReadBy = (conversationId: string, userId: string, seq: bigint) => (e: Event) =>
    e.conversationId === conversationId && e.kind.case === "readPositionMoved" && e.kind.value.userId === userId &&
    e.kind.value.lastReadSeq === seq;

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("sends read_position_moved to the other members' feeds when a member marks read", async () => {
        const [a, b, c, outsider] = await newUsers(server, 4, "receipt");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        for (let i = 0; i < 4; i++) await sendText(A, conv.id, `m${i}`);
        const fa = await openLiveFeed(A, { label: `a/${protocol}` });
        const fc = await openLiveFeed(server.clientsFor(c!, protocol), { label: `c/${protocol}` });
        const fo = await openLiveFeed(server.clientsFor(outsider!, protocol), { label: `outsider/${protocol}` });
        feeds.push(fa, fc, fo);

        const res = await server.clientsFor(b!, protocol).conversations.markRead({ conversationId: conv.id, seq: 3n });
        assert.equal(res.lastReadSeq, 3n);
        assert.equal(res.unreadCount, 1n, "one message left unread");
        for (const feed of [fa, fc]) {
          const { event } = await feed.waitForEvent(isReadBy(conv.id, b!, 3n), "read_position_moved(b, 3)");
          assertStoredEvent(event, conv.id, b);
        }
        // Outsiders learn nothing: a fence in a conversation of theirs shows the receipt never came.
        const fenceConv = await createDirect(A, outsider!);
        const fence = await sendText(A, fenceConv.id, "fence");
        await fo.waitForEvent(isMessage(fenceConv.id, fence.seq), "the fence message");
        assertNoneArrived(fo, (f) => f.case === "event" && f.value.conversationId === conv.id, "an outsider received an event of the group");
      });

      it("lists every current member's read position with when it moved, members only", async () => {
        const [a, b, c, d, outsider] = await newUsers(server, 5, "readstate");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        for (let i = 0; i < 5; i++) await sendText(A, conv.id, `m${i}`);
        const marked = await server.clientsFor(b!, protocol).conversations.markRead({ conversationId: conv.id, seq: 4n });
        await server.clientsFor(c!, protocol).conversations.markRead({ conversationId: conv.id, seq: 2n });
        await A.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });

        const { positions } = await server.clientsFor(c!, protocol).conversations.getReadState({ conversationId: conv.id });
        const byUser = new Map(positions.map((p) => [p.userId, p]));
        assert.deepEqual([...byUser.keys()].sort(), [a, b, c, d].sort(), "one entry per current member");
        assert.equal(positions.length, 4, "no member listed twice");
        assert.equal(positions[3]?.userId, d, "in join order: the latest joiner last");
        assert.equal(byUser.get(b!)?.lastReadSeq, 4n);
        assert.equal(byUser.get(c!)?.lastReadSeq, 2n);
        assert.ok(byUser.get(b!)?.readAt, "b's read_at is set");
        assert.ok(Math.abs(ms(byUser.get(b!)?.readAt) - Date.now()) < 5 * 60_000, "read_at is about now");
        assert.equal(marked.lastReadSeq, 4n);

        // Positions never move back.
        await server.clientsFor(b!, protocol).conversations.markRead({ conversationId: conv.id, seq: 1n });
        const again = await A.conversations.getReadState({ conversationId: conv.id });
        assert.equal(again.positions.find((p) => p.userId === b)?.lastReadSeq, 4n, "marking an older seq does not move it back");

        // A member who leaves drops out of the list and can no longer read it.
        await server.clientsFor(c!, protocol).conversations.removeMember({ conversationId: conv.id, userId: c! });
        const afterLeave = await A.conversations.getReadState({ conversationId: conv.id });
        assert.deepEqual(afterLeave.positions.map((p) => p.userId).sort(), [a, b, d].sort());
        await expectCode(server.clientsFor(c!, protocol).conversations.getReadState({ conversationId: conv.id }), Code.NotFound);
        await expectCode(server.clientsFor(outsider!, protocol).conversations.getReadState({ conversationId: conv.id }), Code.NotFound);
      });
    });
  }

  it("tells the sender of a direct message when the peer read it", async () => {
    const [a, b] = await newUsers(server, 2, "dmreceipt");
    const A = server.clientsFor(a!, "grpc");
    const direct = await createDirect(A, b!);
    const m = await sendText(A, direct.id, "did you see this?");
    const fa = await openLiveFeed(A, { label: "a" });
    feeds.push(fa);
    await server.clientsFor(b!, "connect").conversations.markRead({ conversationId: direct.id, seq: m.seq });
    await fa.waitForEvent(isReadBy(direct.id, b!, m.seq), "read_position_moved(b) on a's feed");
    const { positions } = await A.conversations.getReadState({ conversationId: direct.id });
    assert.equal(positions.find((p) => p.userId === b)?.lastReadSeq, m.seq, "seen");
  });

  it("gives the read positions of all 500 members of a full group", async function () {
    this.timeout(120_000);
    const [owner, ...others] = await newUsers(server, 500, "big");
    const O = server.clientsFor(owner!, "grpc");
    const conv = await createGroup(O, others);
    for (let i = 0; i < 3; i++) await sendText(O, conv.id, `m${i}`);
    const readers = others.slice(0, 25);
    await Promise.all(readers.map((id, i) => server.clientsFor(id, "connect").conversations.markRead({ conversationId: conv.id, seq: BigInt((i % 3) + 1) })));
    const { positions } = await server.clientsFor(others[499 - 1]!, "connect").conversations.getReadState({ conversationId: conv.id });
    assert.equal(positions.length, 500, "every member of the group");
    assert.equal(new Set(positions.map((p) => p.userId)).size, 500, "each once");
    const byUser = new Map(positions.map((p) => [p.userId, p.lastReadSeq]));
    readers.forEach((id, i) => assert.equal(byUser.get(id), BigInt((i % 3) + 1), `${id}'s position`));
    assert.equal(byUser.get(others[100]!), 0n, "a member who read nothing is at 0");
  });
});
