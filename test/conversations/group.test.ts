import assert from "node:assert/strict";
import { ConversationType, MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, uniqueId, type TestServer } from "../helpers/test-server.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { createGroup, listAllConversations, ms } from "../helpers/fixtures.ts";

describe("GROUP conversations (MAX_GROUP_MEMBERS=5)", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ MAX_GROUP_MEMBERS: "5" });
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("creates a group of the creator and two others, with the creator as its admin", async () => {
        const [owner, bob, carol] = await newUsers(server, 3, "trio");
        const clients = server.clientsFor(owner!, protocol);
        const res = await clients.conversations.createConversation({
          type: ConversationType.GROUP,
          memberIds: [bob!, carol!],
          name: "Trio",
          description: "three people",
        });
        assert.equal(res.created, true);
        const conv = res.conversation!;
        assert.equal(conv.type, ConversationType.GROUP);
        assert.equal(conv.memberCount, 3);
        assert.equal(conv.name, "Trio");
        assert.equal(conv.description, "three people");
        assert.equal(conv.createdBy, owner);
        assert.equal(conv.myRole, MemberRole.ADMIN);
        assert.equal(conv.directPeerId, "");

        const members = await clients.conversations.listMembers({ conversationId: conv.id });
        const roles = new Map(members.members.map((m) => [m.userId, m.role]));
        assert.deepEqual(
          [...roles.keys()].sort(),
          [owner!, bob!, carol!].sort(),
        );
        assert.equal(roles.get(owner!), MemberRole.ADMIN);
        assert.equal(roles.get(bob!), MemberRole.MEMBER);
        assert.equal(roles.get(carol!), MemberRole.MEMBER);

        const asBob = await server.clientsFor(bob!, protocol).conversations.getConversation({ conversationId: conv.id });
        assert.equal(asBob.conversation?.myRole, MemberRole.MEMBER);
      });
    });
  }

  it("rejects a group with only one other member, naming member_ids", async () => {
    const [owner, bob] = await newUsers(server, 2, "pair");
    const clients = server.clientsFor(owner!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob!], name: "too small" }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created for the caller");
    assert.equal((await listAllConversations(server.clientsFor(bob!))).length, 0, "nothing was created for the member");
  });

  it("rejects a group with no other members, naming member_ids", async () => {
    const [owner] = await newUsers(server, 1, "alone");
    await expectInvalidArgument(
      server.clientsFor(owner!).conversations.createConversation({ type: ConversationType.GROUP, memberIds: [], name: "solo" }),
      "member_ids",
    );
  });

  it("does not count a repeated member id twice toward the minimum", async () => {
    const [owner, bob] = await newUsers(server, 2, "dup");
    const clients = server.clientsFor(owner!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob!, bob!], name: "dup" }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
  });

  it("accepts a group at exactly MAX_GROUP_MEMBERS members", async () => {
    const [owner, ...others] = await newUsers(server, 5, "full");
    const conv = await createGroup(server.clientsFor(owner!), others);
    assert.equal(conv.memberCount, 5);
  });

  it("rejects a group over MAX_GROUP_MEMBERS members, naming member_ids", async () => {
    const [owner, ...others] = await newUsers(server, 6, "over");
    const clients = server.clientsFor(owner!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.GROUP, memberIds: others, name: "over" }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0, "nothing was created");
    for (const other of others) {
      assert.equal((await listAllConversations(server.clientsFor(other))).length, 0, `nothing was created for ${other}`);
    }
  });

  it("rejects a group with a user who never called, naming member_ids, and creates nothing", async () => {
    const [owner, bob] = await newUsers(server, 2, "ghostgroup");
    const clients = server.clientsFor(owner!);
    await expectInvalidArgument(
      clients.conversations.createConversation({
        type: ConversationType.GROUP,
        memberIds: [bob!, uniqueId("ghost")],
        name: "with ghost",
      }),
      "member_ids",
    );
    assert.equal((await listAllConversations(clients)).length, 0);
    assert.equal((await listAllConversations(server.clientsFor(bob!))).length, 0);
  });

  it("requires a name for a group, naming name", async () => {
    const [owner, bob, carol] = await newUsers(server, 3, "noname");
    const clients = server.clientsFor(owner!);
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob!, carol!], name: "" }),
      "name",
    );
    assert.equal((await listAllConversations(clients)).length, 0);
  });

  it("accepts a 100-character name and rejects a 101-character one, naming name", async () => {
    const [owner, bob, carol] = await newUsers(server, 3, "namelen");
    const clients = server.clientsFor(owner!);
    const ok = await createGroup(clients, [bob!, carol!], "n".repeat(100));
    assert.equal(ok.name, "n".repeat(100));
    await expectInvalidArgument(
      clients.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob!, carol!], name: "n".repeat(101) }),
      "name",
    );
    assert.equal((await listAllConversations(clients)).length, 1, "only the valid group exists");
  });

  it("accepts a 1,000-character description and rejects a 1,001-character one, naming description", async () => {
    const [owner, bob, carol] = await newUsers(server, 3, "desclen");
    const clients = server.clientsFor(owner!);
    const ok = await clients.conversations.createConversation({
      type: ConversationType.GROUP,
      memberIds: [bob!, carol!],
      name: "described",
      description: "d".repeat(1000),
    });
    assert.equal(ok.conversation?.description, "d".repeat(1000));
    await expectInvalidArgument(
      clients.conversations.createConversation({
        type: ConversationType.GROUP,
        memberIds: [bob!, carol!],
        name: "overdescribed",
        description: "d".repeat(1001),
      }),
      "description",
    );
    assert.equal((await listAllConversations(clients)).length, 1, "only the valid group exists");
  });

  it("rejects AddMembers that would pass MAX_GROUP_MEMBERS, naming user_ids, and adds no one", async () => {
    const [owner, b, c, d, e, f] = await newUsers(server, 6, "addover");
    const clients = server.clientsFor(owner!);
    const conv = await createGroup(clients, [b!, c!]);
    await expectInvalidArgument(
      clients.conversations.addMembers({ conversationId: conv.id, userIds: [d!, e!, f!] }),
      "user_ids",
    );
    const after = await clients.conversations.getConversation({ conversationId: conv.id });
    assert.equal(after.conversation?.memberCount, 3, "no member was added");
    assert.equal((await listAllConversations(server.clientsFor(d!))).length, 0, "d was not added");
  });

  it("adds members up to exactly MAX_GROUP_MEMBERS and reports only the newly added ones", async () => {
    const [owner, b, c, d, e] = await newUsers(server, 5, "addfull");
    const clients = server.clientsFor(owner!);
    const conv = await createGroup(clients, [b!, c!]);
    const res = await clients.conversations.addMembers({ conversationId: conv.id, userIds: [b!, d!, e!] });
    assert.deepEqual(res.added.map((m) => m.userId).sort(), [d!, e!].sort(), "b was already a member");
    for (const m of res.added) assert.equal(m.role, MemberRole.MEMBER);
    assert.equal(res.conversation?.memberCount, 5);
  });

  it("rejects AddMembers with a user who never called, naming user_ids", async () => {
    const [owner, b, c] = await newUsers(server, 3, "addghost");
    const clients = server.clientsFor(owner!);
    const conv = await createGroup(clients, [b!, c!]);
    await expectInvalidArgument(
      clients.conversations.addMembers({ conversationId: conv.id, userIds: [uniqueId("ghost")] }),
      "user_ids",
    );
    const after = await clients.conversations.getConversation({ conversationId: conv.id });
    assert.equal(after.conversation?.memberCount, 3);
  });

  it("lists members in the order they joined, across pages", async () => {
    const [owner, b, c, d, e] = await newUsers(server, 5, "pages");
    const clients = server.clientsFor(owner!);
    const conv = await createGroup(clients, [b!, c!]);
    await clients.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
    await clients.conversations.addMembers({ conversationId: conv.id, userIds: [e!] });

    const seen: string[] = [];
    const joined: number[] = [];
    let pageToken = "";
    for (let page = 0; page < 10; page++) {
      const res = await clients.conversations.listMembers({ conversationId: conv.id, pageSize: 2, pageToken });
      assert.ok(res.members.length <= 2, "a page holds at most page_size members");
      seen.push(...res.members.map((m) => m.userId));
      joined.push(...res.members.map((m) => ms(m.joinedAt)));
      if (!res.nextPageToken) break;
      pageToken = res.nextPageToken;
    }
    assert.equal(seen.length, 5, `every member once: ${seen.join(", ")}`);
    assert.equal(new Set(seen).size, 5, "no member twice");
    assert.deepEqual(seen.slice(3), [d!, e!], "later joiners come last, in join order");
    for (let i = 1; i < joined.length; i++) {
      assert.ok(joined[i]! >= joined[i - 1]!, "joined_at never goes back");
    }
  });

  it("rejects a ListMembers page_size over 500 or below 0, naming page_size", async () => {
    const [owner, b, c] = await newUsers(server, 3, "mpage");
    const clients = server.clientsFor(owner!);
    const conv = await createGroup(clients, [b!, c!]);
    await expectInvalidArgument(clients.conversations.listMembers({ conversationId: conv.id, pageSize: 501 }), "page_size");
    await expectInvalidArgument(clients.conversations.listMembers({ conversationId: conv.id, pageSize: -1 }), "page_size");
  });
});

describe("GROUP conversations at the default limit of 500 members", () => {
  let server: TestServer;
  let users: string[];
  before(async function () {
    this.timeout(120_000);
    server = await startTestServer();
    users = await newUsers(server, 501, "crowd");
  });
  after(async () => {
    await server?.stop();
  });

  it("rejects a group of 501 members, naming member_ids", async () => {
    const [owner, ...others] = users;
    assert.equal(others.length, 500);
    await expectInvalidArgument(
      server.clientsFor(owner!, "grpc").conversations.createConversation({
        type: ConversationType.GROUP,
        memberIds: others,
        name: "too many",
      }),
      "member_ids",
    );
    assert.equal((await listAllConversations(server.clientsFor(owner!))).length, 0);
  });

  it("creates a group of exactly 500 members and lists them all in one page of 500", async () => {
    const [owner, ...others] = users;
    const clients = server.clientsFor(owner!, "grpc");
    const conv = await createGroup(clients, others.slice(0, 499), "five hundred");
    assert.equal(conv.memberCount, 500);
    const page = await clients.conversations.listMembers({ conversationId: conv.id, pageSize: 500 });
    assert.equal(page.members.length, 500);
    assert.equal(new Set(page.members.map((m) => m.userId)).size, 500);
    assert.equal(page.nextPageToken, "", "no more members after all 500");
    const defaultPage = await clients.conversations.listMembers({ conversationId: conv.id });
    assert.equal(defaultPage.members.length, 100, "the default page size is 100");
    assert.notEqual(defaultPage.nextPageToken, "");
  });
});
