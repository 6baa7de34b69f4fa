/**
 * Live delivery on one node (issue 4, "Feeds"): one Subscribe stream carries the events of every
 * conversation the caller is a member of, including those it joins while connected, and stops
 * carrying those of a conversation it leaves, immediately.
 *
 * Negative checks ("X never arrives") wait for a fence: a later event the server published after
 * the change, to the same stream. Anything wrongly delivered would have arrived before it.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import {
  assertNoneArrived,
  assertStoredEvent,
  isMessage,
  messageSeqs,
  openFeed,
  openLiveFeed,
  type Feed,
} from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";

describe("Subscribe: live delivery on one node", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  async function live(userId: string, protocol: Protocol, cursor?: string): Promise<Feed> {
    const feed = await openLiveFeed(server.clientsFor(userId, protocol), { cursor, label: `${userId}/${protocol}` });
    feeds.push(feed);
    return feed;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("delivers every message to every member's stream, the sender's too, in seq order with the full message", async () => {
        const [a, b, c] = await newUsers(server, 3, "deliver");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fa = await live(a!, protocol);
        const fb = await live(b!, protocol);
        const fc = await live(c!, protocol);

        const sent = [await sendText(A, conv.id, "one"), await sendText(A, conv.id, "two")];
        // A burst of concurrent sends: they still arrive in seq order.
        sent.push(...(await Promise.all(Array.from({ length: 18 }, (_, i) => sendText(A, conv.id, `burst ${i}`)))));
        const expected = Array.from({ length: 20 }, (_, i) => BigInt(i + 1));

        for (const feed of [fa, fb, fc]) {
          await feed.waitUntil(() => messageSeqs(feed, conv.id).length >= 20, "all 20 messages");
          assert.deepEqual(messageSeqs(feed, conv.id), expected, `${feed.label}: seq 1..20 once each, in order`);
        }
        const bySeq = new Map(sent.map((m) => [m.seq, m]));
        for (const e of fb.events.filter((e) => e.kind.case === "messageCreated")) {
          assertStoredEvent(e, conv.id, a);
          const got = e.kind.case === "messageCreated" ? e.kind.value.message : undefined;
          const want = bySeq.get(got?.seq ?? -1n)!;
          assert.equal(got?.id, want.id, "message id");
          assert.equal(got?.senderId, a, "sender");
          assert.equal(got?.clientMessageId, want.clientMessageId, "client_message_id");
          assert.deepEqual(got?.content, want.content, "content");
          assert.ok(got?.createdAt, "created_at");
          assert.deepEqual(got?.reactions, [], "a new message has no reactions");
        }
        const ids = fb.events.map((e) => e.id);
        assert.equal(new Set(ids).size, ids.length, "event ids are unique");
        const cursors = fb.events.filter((e) => e.kind.case !== "typing" && e.kind.case !== "presenceChanged").map((e) => e.cursor);
        assert.ok(cursors.every((c) => c !== ""), "every stored event has a cursor");
        assert.equal(new Set(cursors).size, cursors.length, "every stored event has its own cursor");
      });

      it("starts now when subscribed without a cursor: nothing older arrives", async () => {
        const [a, b, c] = await newUsers(server, 3, "now");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        await sendText(A, conv.id, "old 1");
        await sendText(A, conv.id, "old 2");
        const fb = await live(b!, protocol);
        const fresh = await sendText(A, conv.id, "new");
        await fb.waitForEvent(isMessage(conv.id, fresh.seq), "the message sent after subscribing");
        assert.deepEqual(messageSeqs(fb, conv.id), [3n], "only the new message (seq 3), no history");
      });

      it("delivers the messages of conversations created while the stream is open", async () => {
        const [a, b, c] = await newUsers(server, 3, "created");
        const fb = await live(b!, protocol);
        const group = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        const g1 = await sendText(server.clientsFor(c!, protocol), group.id, "hi in the new group");
        await fb.waitForEvent(isMessage(group.id, g1.seq), "the first message of a group created after subscribing");
        const direct = await createDirect(server.clientsFor(c!, protocol), b!);
        const d1 = await sendText(server.clientsFor(c!, protocol), direct.id, "hi directly");
        await fb.waitForEvent(isMessage(direct.id, d1.seq), "the first message of a direct conversation created after subscribing");
      });

      it("sends member_added to everyone, the added user too, who then receives the conversation without resubscribing", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "join");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const fb = await live(b!, protocol);
        const fd = await live(d!, protocol);
        const before = await sendText(A, conv.id, "before d joins");
        await fb.waitForEvent(isMessage(conv.id, before.seq), "the message before d joins");

        await A.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
        const isAdded = (e: Event) =>
          e.conversationId === conv.id && e.kind.case === "memberAdded" && e.kind.value.member?.userId === d;
        const { event: added } = await fd.waitForEvent(isAdded, "member_added for d, on d's own stream");
        assertStoredEvent(added, conv.id, a);
        assert.equal(added.kind.case === "memberAdded" && added.kind.value.member?.role, MemberRole.MEMBER, "joined as MEMBER");
        await fb.waitForEvent(isAdded, "member_added for d, on b's stream");

        const welcome = await sendText(A, conv.id, "welcome d");
        await fd.waitForEvent(isMessage(conv.id, welcome.seq), "the next message, without resubscribing");
        const fromD = await sendText(server.clientsFor(d!, protocol), conv.id, "thanks");
        await fb.waitForEvent(isMessage(conv.id, fromD.seq), "d's message on b's stream");
        await fd.waitForEvent(isMessage(conv.id, fromD.seq), "d's own message on d's stream");
        assertNoneArrived(
          fd,
          (f) => f.case === "event" && isMessage(conv.id, before.seq)(f.value),
          "d received a message sent before it was a member",
        );
      });

      it("sends member_removed to the removed member as its last event of the conversation, immediately", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "removed");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!, d!]);
        const fb = await live(b!, protocol);
        const fd = await live(d!, protocol);
        const m1 = await sendText(A, conv.id, "d is still here");
        await fd.waitForEvent(isMessage(conv.id, m1.seq), "a message while d is a member");

        await A.conversations.removeMember({ conversationId: conv.id, userId: d! });
        const isRemoved = (e: Event) =>
          e.conversationId === conv.id && e.kind.case === "memberRemoved" && e.kind.value.userId === d;
        const { event: removed, index: removedAt } = await fd.waitForEvent(isRemoved, "member_removed for d, on d's own stream");
        assertStoredEvent(removed, conv.id, a);
        assert.equal(removed.kind.case === "memberRemoved" && removed.kind.value.left, false, "removed by an admin: left=false");
        await fb.waitForEvent(isRemoved, "member_removed for d, on b's stream");

        const after = await sendText(A, conv.id, "d is gone");
        await server.clientsFor(a!, protocol).conversations.updateConversation({ conversationId: conv.id, name: "without d" });
        await fb.waitForEvent(
          (e) => e.conversationId === conv.id && e.kind.case === "conversationUpdated",
          "the rename on b's stream (so the message and the rename were published)",
        );
        const fenceConv = await createDirect(A, d!);
        const fence = await sendText(A, fenceConv.id, "fence");
        await fd.waitForEvent(isMessage(fenceConv.id, fence.seq), "the fence message in another conversation");
        assertNoneArrived(
          fd,
          (f, i) => i > removedAt && f.case === "event" && f.value.conversationId === conv.id,
          `d received events of the conversation after member_removed (message seq ${after.seq}, rename)`,
        );
      });

      it("sends member_removed with left=true when a member leaves, to them and to the others", async () => {
        const [a, b, c] = await newUsers(server, 3, "leave");
        const conv = await createGroup(server.clientsFor(a!, protocol), [b!, c!]);
        const fa = await live(a!, protocol);
        const fb = await live(b!, protocol);
        await server.clientsFor(b!, protocol).conversations.removeMember({ conversationId: conv.id, userId: b! });
        const isLeft = (e: Event) =>
          e.conversationId === conv.id && e.kind.case === "memberRemoved" && e.kind.value.userId === b;
        for (const feed of [fa, fb]) {
          const { event } = await feed.waitForEvent(isLeft, "member_removed for b");
          assertStoredEvent(event, conv.id, b);
          assert.equal(event.kind.case === "memberRemoved" && event.kind.value.left, true, "left on their own: left=true");
        }
      });

      it("sends member_role_changed and conversation_updated to every member", async () => {
        const [a, b, c] = await newUsers(server, 3, "admin");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!], "before");
        const fb = await live(b!, protocol);
        const fc = await live(c!, protocol);
        await A.conversations.setMemberRole({ conversationId: conv.id, userId: c!, role: MemberRole.ADMIN });
        await A.conversations.updateConversation({ conversationId: conv.id, name: "after", description: "new words" });
        for (const feed of [fb, fc]) {
          const { event: role, index: roleAt } = await feed.waitForEvent(
            (e) => e.conversationId === conv.id && e.kind.case === "memberRoleChanged",
            "member_role_changed",
          );
          assertStoredEvent(role, conv.id, a);
          assert.deepEqual(
            role.kind.case === "memberRoleChanged" ? [role.kind.value.userId, role.kind.value.role] : [],
            [c, MemberRole.ADMIN],
          );
          const { event: upd, index: updAt } = await feed.waitForEvent(
            (e) => e.conversationId === conv.id && e.kind.case === "conversationUpdated",
            "conversation_updated",
          );
          assertStoredEvent(upd, conv.id, a);
          assert.deepEqual(
            upd.kind.case === "conversationUpdated" ? [upd.kind.value.name, upd.kind.value.description] : [],
            ["after", "new words"],
          );
          assert.ok(roleAt < updAt, `${feed.label}: events of one conversation arrive in the order they happened`);
        }
      });

      it("sends read_position_moved to the other members when someone marks read, only when it moves forward", async () => {
        const [a, b, c] = await newUsers(server, 3, "receipt");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        for (let i = 0; i < 3; i++) await sendText(A, conv.id, `m${i}`);
        const fa = await live(a!, protocol);
        const fc = await live(c!, protocol);

        await B.conversations.markRead({ conversationId: conv.id, seq: 2n });
        const isReadBy = (seq: bigint) => (e: Event) =>
          e.conversationId === conv.id && e.kind.case === "readPositionMoved" && e.kind.value.userId === b &&
          e.kind.value.lastReadSeq === seq;
        for (const feed of [fa, fc]) {
          const { event } = await feed.waitForEvent(isReadBy(2n), "read_position_moved(b, 2)");
          assertStoredEvent(event, conv.id, b);
        }
        // Marking an older seq does not move the position, so nothing is announced.
        await B.conversations.markRead({ conversationId: conv.id, seq: 1n });
        await B.conversations.markRead({ conversationId: conv.id, seq: 3n });
        await fa.waitForEvent(isReadBy(3n), "read_position_moved(b, 3)");
        assertNoneArrived(
          fa,
          (f) => f.case === "event" && f.value.kind.case === "readPositionMoved" && f.value.kind.value.lastReadSeq < 2n,
          "a read position that did not move forward was announced",
        );
      });

      it("rejects a Subscribe without credentials", async () => {
        const feed = openFeed(server.clientsWithAuthorization(undefined, protocol), { label: `anonymous/${protocol}` });
        feeds.push(feed);
        const end = await feed.ended("without credentials");
        assert.equal(end.error?.code, Code.Unauthenticated, `expected UNAUTHENTICATED; ${feed.summary()}`);
      });
    });
  }

  it("streams to an independent @grpc/grpc-js client built from the .proto files", async () => {
    const protoRoot = fileURLToPath(new URL("../../proto", import.meta.url));
    const definition = protoLoader.loadSync(["parley/v1/event_service.proto"], {
      includeDirs: [protoRoot],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    type StreamClient = grpc.Client & {
      Subscribe(req: object, metadata: grpc.Metadata): grpc.ClientReadableStream<any>;
    };
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      parley: { v1: { EventService: new (address: string, credentials: grpc.ChannelCredentials) => StreamClient } };
    };
    const [a, b, c] = await newUsers(server, 3, "grpcjs");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    const client = new loaded.parley.v1.EventService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${await server.tokenFor(b!)}`);
    const call = client.Subscribe({ cursor: "" }, metadata);
    const frames: any[] = [];
    let waiting: (() => void) | undefined;
    call.on("data", (f) => {
      frames.push(f);
      waiting?.();
    });
    call.on("error", () => undefined);
    const waitFrame = async (match: (f: any) => boolean, what: string) => {
      const deadline = Date.now() + 8_000;
      while (!frames.some(match)) {
        if (Date.now() > deadline) assert.fail(`grpc-js: no ${what} within 8 s; got ${JSON.stringify(frames)}`);
        await new Promise<void>((r) => {
          waiting = r;
          setTimeout(r, 100);
        });
      }
      return frames.find(match);
    };
    try {
      await waitFrame((f) => f.frame === "caught_up" || f.frame === "heartbeat", "first frame");
      const m = await sendText(server.clientsFor(a!), conv.id, "to a grpc-js stub");
      const got = await waitFrame(
        (f) => f.frame === "event" && f.event?.kind === "message_created" && f.event.message_created?.message?.seq === String(m.seq),
        "message_created",
      );
      assert.equal(got.event.conversation_id, conv.id);
      assert.equal(got.event.message_created.message.text, "to a grpc-js stub");
      assert.ok(got.event.cursor, "cursor");
    } finally {
      call.cancel();
      client.close();
    }
  });
});
