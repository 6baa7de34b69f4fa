import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { absentIdLike, createDirect, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";

describe("conversations the caller is not in", () => {
  let server: TestServer;
  let admin: string;
  let member: string;
  let outsider: string;
  let spare: string;
  let groupId: string;
  let directId: string;

  before(async () => {
    server = await startTestServer();
    const [a, b, c, o, s] = await newUsers(server, 5, "members");
    admin = a!;
    member = b!;
    outsider = o!;
    spare = s!;
    const clients = server.clientsFor(admin);
    groupId = (await createGroup(clients, [b!, c!], "private")).id;
    await sendText(clients, groupId, "secret");
    directId = (await createDirect(clients, b!)).id;
    await sendText(clients, directId, "just us");
  });
  after(async () => {
    await server?.stop();
  });

  /** Every conversation-scoped RPC, with arguments that would be valid for a member. */
  const rpcs = (): Array<[string, (c: Clients, conversationId: string) => Promise<unknown>]> => [
    ["GetConversation", (c, id) => c.conversations.getConversation({ conversationId: id })],
    ["ListMessages", (c, id) => c.messages.listMessages({ conversationId: id })],
    ["GetMessage", (c, id) => c.messages.getMessage({ conversationId: id, seq: 1n })],
    [
      "SendMessage",
      (c, id) =>
        c.messages.sendMessage({ conversationId: id, clientMessageId: randomUUID(), content: { case: "text", value: "hi" } }),
    ],
    ["ListMembers", (c, id) => c.conversations.listMembers({ conversationId: id })],
    ["MarkRead", (c, id) => c.conversations.markRead({ conversationId: id, seq: 1n })],
    ["UpdateConversation", (c, id) => c.conversations.updateConversation({ conversationId: id, name: "taken over" })],
    ["AddMembers", (c, id) => c.conversations.addMembers({ conversationId: id, userIds: [spare] })],
    ["RemoveMember", (c, id) => c.conversations.removeMember({ conversationId: id, userId: member })],
    ["RemoveMember (self)", (c, id) => c.conversations.removeMember({ conversationId: id, userId: outsider })],
    [
      "SetMemberRole",
      (c, id) => c.conversations.setMemberRole({ conversationId: id, userId: outsider, role: MemberRole.ADMIN }),
    ],
  ];

  /** The message with every conversation id blanked, so two errors can be compared. */
  const normalized = (message: string, ...ids: string[]) =>
    ids.reduce((m, id) => m.split(id).join("<id>"), message);

  for (const protocol of MAIN_PROTOCOLS) {
    for (const kind of ["GROUP", "DIRECT"] as const) {
      it(`answers a non-member exactly as for a nonexistent ${kind} conversation (${protocol})`, async () => {
        const clients = server.clientsFor(outsider, protocol);
        const realId = kind === "GROUP" ? groupId : directId;
        const absentId = absentIdLike(realId);
        for (const [name, call] of rpcs()) {
          const hidden = await expectCode(call(clients, realId), Code.NotFound).catch((err: Error) => {
            throw new Error(`${name} on a ${kind} the caller is not in: ${err.message}`);
          });
          const absent = await expectCode(call(clients, absentId), Code.NotFound).catch((err: Error) => {
            throw new Error(`${name} on a nonexistent id ${absentId}: ${err.message}`);
          });
          assert.equal(
            normalized(hidden.rawMessage, realId, absentId),
            normalized(absent.rawMessage, realId, absentId),
            `${name}: the messages must not tell a hidden conversation from a missing one`,
          );
          assert.equal(hidden.details.length, absent.details.length, `${name}: same details`);
        }
      });
    }
  }

  it("changed nothing on behalf of the outsider", async () => {
    const clients = server.clientsFor(admin);
    const group = (await clients.conversations.getConversation({ conversationId: groupId })).conversation!;
    assert.equal(group.name, "private");
    assert.equal(group.memberCount, 3);
    assert.equal(group.lastSeq, 1n, "no message from the outsider");
    const members = await clients.conversations.listMembers({ conversationId: groupId });
    const ids = members.members.map((m) => m.userId);
    assert.ok(ids.includes(member), "the member was not removed");
    assert.ok(!ids.includes(outsider), "the outsider did not get in");
    assert.ok(!ids.includes(spare), "the outsider added no one");
    const history = await listAllForward(clients, directId);
    assert.equal(history.length, 1);
  });

  it("treats a former member as an outsider", async () => {
    const [a, b, c] = await newUsers(server, 3, "former");
    const conv = await createGroup(server.clientsFor(a!), [b!, c!]);
    await sendText(server.clientsFor(c!), conv.id, "before I go");
    await server.clientsFor(a!).conversations.removeMember({ conversationId: conv.id, userId: c! });
    const gone = server.clientsFor(c!);
    await expectCode(gone.conversations.getConversation({ conversationId: conv.id }), Code.NotFound);
    await expectCode(gone.messages.listMessages({ conversationId: conv.id }), Code.NotFound);
    await expectCode(gone.messages.getMessage({ conversationId: conv.id, seq: 1n }), Code.NotFound);
    await expectCode(gone.conversations.markRead({ conversationId: conv.id, seq: 1n }), Code.NotFound);
    await expectCode(sendText(gone, conv.id, "let me back in"), Code.NotFound);
  });

  it("does not let a page_token open a conversation the caller is not in", async () => {
    // Make sure there is more than one message, so a page of one has a next_page_token.
    await sendText(server.clientsFor(admin), groupId, "second secret");
    const twoPages = await server.clientsFor(admin).messages.listMessages({ conversationId: groupId, pageSize: 1 });
    assert.notEqual(twoPages.nextPageToken, "");
    await expectCode(
      server.clientsFor(outsider).messages.listMessages({ conversationId: groupId, pageToken: twoPages.nextPageToken }),
      Code.NotFound,
    );
  });
});
