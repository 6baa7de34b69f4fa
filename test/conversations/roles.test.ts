import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { ConversationType, MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument, expectOneOfCodes } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllConversations, sendText } from "../helpers/fixtures.ts";

describe("group roles", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  async function roles(asUser: string, conversationId: string): Promise<Map<string, MemberRole>> {
    const res = await server.clientsFor(asUser).conversations.listMembers({ conversationId, pageSize: 500 });
    return new Map(res.members.map((m) => [m.userId, m.role]));
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("lets an admin rename a group and change its description", async () => {
        const [admin, b, c] = await newUsers(server, 3, "rename");
        const clients = server.clientsFor(admin!, protocol);
        const conv = await createGroup(clients, [b!, c!], "before");
        const renamed = await clients.conversations.updateConversation({ conversationId: conv.id, name: "after" });
        assert.equal(renamed.conversation?.name, "after");
        const described = await clients.conversations.updateConversation({ conversationId: conv.id, description: "new words" });
        assert.equal(described.conversation?.name, "after", "an unset name stays as it was");
        assert.equal(described.conversation?.description, "new words");
        const seen = await server.clientsFor(b!, protocol).conversations.getConversation({ conversationId: conv.id });
        assert.equal(seen.conversation?.name, "after");
      });

      it("refuses UpdateConversation from a plain member with PERMISSION_DENIED and changes nothing", async () => {
        const [admin, b, c] = await newUsers(server, 3, "norename");
        const conv = await createGroup(server.clientsFor(admin!, protocol), [b!, c!], "original");
        await expectCode(
          server.clientsFor(b!, protocol).conversations.updateConversation({ conversationId: conv.id, name: "hijacked" }),
          Code.PermissionDenied,
        );
        const seen = await server.clientsFor(admin!, protocol).conversations.getConversation({ conversationId: conv.id });
        assert.equal(seen.conversation?.name, "original");
      });

      it("refuses AddMembers from a plain member with PERMISSION_DENIED and adds no one", async () => {
        const [admin, b, c, d] = await newUsers(server, 4, "noadd");
        const conv = await createGroup(server.clientsFor(admin!, protocol), [b!, c!]);
        await expectCode(
          server.clientsFor(b!, protocol).conversations.addMembers({ conversationId: conv.id, userIds: [d!] }),
          Code.PermissionDenied,
        );
        assert.equal((await roles(admin!, conv.id)).has(d!), false);
      });

      it("refuses RemoveMember of someone else from a plain member with PERMISSION_DENIED", async () => {
        const [admin, b, c] = await newUsers(server, 3, "noremove");
        const conv = await createGroup(server.clientsFor(admin!, protocol), [b!, c!]);
        await expectCode(
          server.clientsFor(b!, protocol).conversations.removeMember({ conversationId: conv.id, userId: c! }),
          Code.PermissionDenied,
        );
        assert.equal((await roles(admin!, conv.id)).has(c!), true);
      });

      it("refuses SetMemberRole from a plain member with PERMISSION_DENIED", async () => {
        const [admin, b, c] = await newUsers(server, 3, "nopromote");
        const conv = await createGroup(server.clientsFor(admin!, protocol), [b!, c!]);
        await expectCode(
          server.clientsFor(b!, protocol).conversations.setMemberRole({
            conversationId: conv.id,
            userId: b!,
            role: MemberRole.ADMIN,
          }),
          Code.PermissionDenied,
        );
        assert.equal((await roles(admin!, conv.id)).get(b!), MemberRole.MEMBER);
      });

      it("lets an admin add, promote and remove members", async () => {
        const [admin, b, c, d] = await newUsers(server, 4, "adminops");
        const clients = server.clientsFor(admin!, protocol);
        const conv = await createGroup(clients, [b!, c!]);

        const added = await clients.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
        assert.deepEqual(added.added.map((m) => m.userId), [d!]);
        assert.equal(added.conversation?.memberCount, 4);

        const promoted = await clients.conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.ADMIN });
        assert.equal(promoted.member?.userId, b);
        assert.equal(promoted.member?.role, MemberRole.ADMIN);

        // The new admin can now do admin things.
        await server.clientsFor(b!, protocol).conversations.removeMember({ conversationId: conv.id, userId: c! });
        const after = await roles(admin!, conv.id);
        assert.equal(after.has(c!), false);
        assert.equal(after.get(b!), MemberRole.ADMIN);
        const conversation = await clients.conversations.getConversation({ conversationId: conv.id });
        assert.equal(conversation.conversation?.memberCount, 3);
      });

      it("lets a plain member leave, after which the group is NOT_FOUND for them", async () => {
        const [admin, b, c] = await newUsers(server, 3, "leave");
        const conv = await createGroup(server.clientsFor(admin!, protocol), [b!, c!]);
        const leaver = server.clientsFor(c!, protocol);
        await leaver.conversations.removeMember({ conversationId: conv.id, userId: c! });

        await expectCode(leaver.conversations.getConversation({ conversationId: conv.id }), Code.NotFound);
        await expectCode(sendText(leaver, conv.id, "still here?"), Code.NotFound);
        assert.equal((await listAllConversations(leaver)).some((x) => x.id === conv.id), false);
        const seen = await server.clientsFor(admin!, protocol).conversations.getConversation({ conversationId: conv.id });
        assert.equal(seen.conversation?.memberCount, 2);
      });

      it("refuses to demote the last admin with FAILED_PRECONDITION", async () => {
        const [admin, b, c] = await newUsers(server, 3, "lastadmin");
        const clients = server.clientsFor(admin!, protocol);
        const conv = await createGroup(clients, [b!, c!]);
        await expectCode(
          clients.conversations.setMemberRole({ conversationId: conv.id, userId: admin!, role: MemberRole.MEMBER }),
          Code.FailedPrecondition,
        );
        assert.equal((await roles(admin!, conv.id)).get(admin!), MemberRole.ADMIN);
      });
    });
  }

  it("lets one of two admins step down to member", async () => {
    const [admin, b, c] = await newUsers(server, 3, "stepdown");
    const clients = server.clientsFor(admin!);
    const conv = await createGroup(clients, [b!, c!]);
    await clients.conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.ADMIN });
    const res = await clients.conversations.setMemberRole({ conversationId: conv.id, userId: admin!, role: MemberRole.MEMBER });
    assert.equal(res.member?.role, MemberRole.MEMBER);
    const after = await roles(b!, conv.id);
    assert.equal(after.get(admin!), MemberRole.MEMBER);
    assert.equal(after.get(b!), MemberRole.ADMIN);
    // And now b is the last admin, who cannot step down.
    await expectCode(
      server.clientsFor(b!).conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.MEMBER }),
      Code.FailedPrecondition,
    );
  });

  it("keeps an admin in the group when its only admin leaves", async () => {
    const [admin, b, c] = await newUsers(server, 3, "adminleaves");
    const conv = await createGroup(server.clientsFor(admin!), [b!, c!]);
    await server.clientsFor(admin!).conversations.removeMember({ conversationId: conv.id, userId: admin! });

    const after = await roles(b!, conv.id);
    assert.equal(after.has(admin!), false, "the admin left");
    assert.equal(after.size, 2);
    const admins = [...after].filter(([, role]) => role === MemberRole.ADMIN).map(([id]) => id);
    assert.ok(admins.length >= 1, "someone else became admin");

    // The new admin can act as one.
    const newAdmin = admins[0]!;
    const renamed = await server.clientsFor(newAdmin).conversations.updateConversation({ conversationId: conv.id, name: "new regime" });
    assert.equal(renamed.conversation?.name, "new regime");
    const seen = await server.clientsFor(newAdmin).conversations.getConversation({ conversationId: conv.id });
    assert.equal(seen.conversation?.myRole, MemberRole.ADMIN);
  });

  it("keeps an admin in the group when concurrent demotions race", async () => {
    const [a, b, c] = await newUsers(server, 3, "racedemote");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    await server.clientsFor(a!).conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.ADMIN });
    // Each admin demotes themselves at the same time; at most one may succeed.
    const results = await Promise.allSettled([
      server.clientsFor(a!, "grpc").conversations.setMemberRole({ conversationId: conv.id, userId: a!, role: MemberRole.MEMBER }),
      server.clientsFor(b!, "connect").conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.MEMBER }),
    ]);
    const after = await roles(c!, conv.id);
    const admins = [...after].filter(([, role]) => role === MemberRole.ADMIN);
    assert.ok(admins.length >= 1, `the group still has an admin (results: ${results.map((r) => r.status).join(", ")})`);
  });

  it("rejects SetMemberRole with an unspecified role, naming role", async () => {
    const [admin, b, c] = await newUsers(server, 3, "norole");
    const clients = server.clientsFor(admin!);
    const conv = await createGroup(clients, [b!, c!]);
    await expectInvalidArgument(
      clients.conversations.setMemberRole({ conversationId: conv.id, userId: b!, role: MemberRole.UNSPECIFIED }),
      "role",
    );
    assert.equal((await roles(admin!, conv.id)).get(b!), MemberRole.MEMBER);
  });

  it("rejects an empty name in UpdateConversation, naming name", async () => {
    const [admin, b, c] = await newUsers(server, 3, "emptyname");
    const clients = server.clientsFor(admin!);
    const conv = await createGroup(clients, [b!, c!], "keep me");
    await expectInvalidArgument(clients.conversations.updateConversation({ conversationId: conv.id, name: "" }), "name");
    await expectInvalidArgument(
      clients.conversations.updateConversation({ conversationId: conv.id, name: "x".repeat(101) }),
      "name",
    );
    await expectInvalidArgument(
      clients.conversations.updateConversation({ conversationId: conv.id, description: "x".repeat(1001) }),
      "description",
    );
    const seen = await clients.conversations.getConversation({ conversationId: conv.id });
    assert.equal(seen.conversation?.name, "keep me");
    assert.equal(seen.conversation?.description, "");
  });

  it("lets an admin re-add a member who left", async () => {
    const [admin, b, c] = await newUsers(server, 3, "readd");
    const clients = server.clientsFor(admin!);
    const conv = await createGroup(clients, [b!, c!]);
    await server.clientsFor(c!).conversations.removeMember({ conversationId: conv.id, userId: c! });
    const res = await clients.conversations.addMembers({ conversationId: conv.id, userIds: [c!] });
    assert.deepEqual(res.added.map((m) => m.userId), [c!]);
    const seen = await server.clientsFor(c!).conversations.getConversation({ conversationId: conv.id });
    assert.equal(seen.conversation?.myRole, MemberRole.MEMBER);
  });

  it("never changes the two members of a DIRECT conversation", async () => {
    const [a, b, c] = await newUsers(server, 3, "directfixed");
    const clients = server.clientsFor(a!);
    const conv = await createDirect(clients, b!);
    await expectOneOfCodes(clients.conversations.addMembers({ conversationId: conv.id, userIds: [c!] }), [
      Code.InvalidArgument,
      Code.FailedPrecondition,
      Code.PermissionDenied,
    ]);
    await expectOneOfCodes(
      clients.conversations.setMemberRole({ conversationId: conv.id, userId: a!, role: MemberRole.ADMIN }),
      [Code.InvalidArgument, Code.FailedPrecondition, Code.PermissionDenied],
    );
    const seen = await clients.conversations.getConversation({ conversationId: conv.id });
    assert.equal(seen.conversation?.memberCount, 2);
    assert.equal(seen.conversation?.type, ConversationType.DIRECT);
    assert.equal(seen.conversation?.myRole, MemberRole.MEMBER);
  });
});
