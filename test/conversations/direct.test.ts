import assert from "node:assert/strict";
import { ConversationType, MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, uniqueId, type TestServer } from "../helpers/test-server.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { listAllConversations } from "../helpers/fixtures.ts";

describe("DIRECT conversations", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("creates a DIRECT conversation of two members, both plain members", async () => {
        const [alice, bob] = await newUsers(server, 2, "direct");
        const res = await server.clientsFor(alice!, protocol).conversations.createConversation({
          type: ConversationType.DIRECT,
          memberIds: [bob!],
        });
        assert.equal(res.created, true);
        const conv = res.conversation!;
        assert.ok(conv.id, "has an id");
        assert.equal(conv.type, ConversationType.DIRECT);
        assert.equal(conv.memberCount, 2);
        assert.equal(conv.directPeerId, bob);
        assert.equal(conv.myRole, MemberRole.MEMBER);
        assert.equal(conv.createdBy, alice);
        assert.equal(conv.lastSeq, 0n);

        const seenByBob = await server.clientsFor(bob!, protocol).conversations.getConversation({ conversationId: conv.id });
        assert.equal(seenByBob.conversation?.directPeerId, alice);
        assert.equal(seenByBob.conversation?.myRole, MemberRole.MEMBER);
      });

      it("returns the existing conversation with created=false when the same pair creates it again", async () => {
        const [alice, bob] = await newUsers(server, 2, "again");
        const aliceClients = server.clientsFor(alice!, protocol);
        const first = await aliceClients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob!] });
        const second = await aliceClients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob!] });
        assert.equal(first.created, true);
        assert.equal(second.created, false);
        assert.equal(second.conversation?.id, first.conversation?.id);
      });

      it("returns the existing conversation when the other side creates it", async () => {
        const [alice, bob] = await newUsers(server, 2, "sides");
        const first = await server.clientsFor(alice!, protocol).conversations.createConversation({
          type: ConversationType.DIRECT,
          memberIds: [bob!],
        });
        const fromBob = await server.clientsFor(bob!, protocol).conversations.createConversation({
          type: ConversationType.DIRECT,
          memberIds: [alice!],
        });
        assert.equal(fromBob.created, false);
        assert.equal(fromBob.conversation?.id, first.conversation?.id);
        assert.equal(fromBob.conversation?.directPeerId, alice);
      });
    });
  }

  it("makes exactly one conversation when both sides create it concurrently", async () => {
    const [alice, bob] = await newUsers(server, 2, "race");
    const calls = Array.from({ length: 12 }, (_, i) => {
      const [me, peer] = i % 2 === 0 ? [alice!, bob!] : [bob!, alice!];
      return server.clientsFor(me, i % 4 < 2 ? "grpc" : "connect").conversations.createConversation({
        type: ConversationType.DIRECT,
        memberIds: [peer],
      });
    });
    const results = await Promise.all(calls);
    const ids = new Set(results.map((r) => r.conversation?.id));
    assert.equal(ids.size, 1, `all creates return one conversation, got ${[...ids].join(", ")}`);
    assert.equal(results.filter((r) => r.created).length, 1, "exactly one create reports created=true");

    for (const user of [alice!, bob!]) {
      const directs = (await listAllConversations(server.clientsFor(user))).filter(
        (c) => c.type === ConversationType.DIRECT,
      );
      assert.equal(directs.length, 1, `${user} sees one DIRECT conversation`);
    }
  });

  it("rejects a DIRECT conversation with oneself, naming member_ids", async () => {
    const [alice] = await newUsers(server, 1, "self");
    const clients = server.clientsFor(alice!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [alice!] }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
  });

  it("rejects a DIRECT conversation with no other member, naming member_ids", async () => {
    const [alice] = await newUsers(server, 1, "none");
    await expectInvalidArgument(
      server.clientsFor(alice!).conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [] }),
      "member_ids",
    );
  });

  it("rejects a DIRECT conversation with two other members, naming member_ids", async () => {
    const [alice, bob, carol] = await newUsers(server, 3, "two");
    const clients = server.clientsFor(alice!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob!, carol!] }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
    assert.equal((await listAllConversations(server.clientsFor(bob!))).length, 0, "nothing was created for bob");
  });

  it("rejects a DIRECT conversation with a user who never called, naming member_ids", async () => {
    const [alice] = await newUsers(server, 1, "unknownpeer");
    const clients = server.clientsFor(alice!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [uniqueId("ghost")] }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
  });

  it("rejects an unspecified conversation type, naming type", async () => {
    const [alice, bob, carol] = await newUsers(server, 3, "untyped");
    const clients = server.clientsFor(alice!);
    await expectInvalidArgument(
      clients.conversations.createConversation({
        type: ConversationType.UNSPECIFIED,
        memberIds: [bob!, carol!],
        name: "untyped",
      }),
      "type",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
  });

  it("keeps DIRECT conversations of different pairs apart", async () => {
    const [alice, bob, carol] = await newUsers(server, 3, "pairs");
    const ab = await server.clientsFor(alice!).conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob!] });
    const ac = await server.clientsFor(alice!).conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [carol!] });
    const bc = await server.clientsFor(bob!).conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [carol!] });
    assert.equal(ac.created, true);
    assert.equal(bc.created, true);
    assert.equal(new Set([ab.conversation?.id, ac.conversation?.id, bc.conversation?.id]).size, 3);
  });
});
