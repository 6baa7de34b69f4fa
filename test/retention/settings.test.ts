/**
 * Setting a conversation's message retention (UpdateConversation.message_retention): group
 * admins, or either member of a DIRECT conversation; at least 60 seconds, zero clears; what
 * Conversation shows (its own and the effective one, the shorter of it and the deployment's);
 * the conversation_updated event members' streams get; and every refusal with its code and
 * nothing written.
 */
import assert from "node:assert/strict";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllConversations } from "../helpers/fixtures.ts";
import { Feed } from "../helpers/feed.ts";

const seconds = (s: number | bigint, nanos = 0) => ({ seconds: BigInt(s), nanos });
const msOf = (d: Duration | undefined) => (d === undefined ? undefined : durationMs(d));

async function conversationOf(c: Clients, conversationId: string): Promise<Conversation> {
  const { conversation } = await c.conversations.getConversation({ conversationId });
  assert.ok(conversation);
  return conversation;
}

describe("conversation message retention: who sets it and what it shows", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("lets a group admin set, change and clear it; Get and List show it, and it applies as is without a deployment retention", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "set")) as [string, string, string];
        const A = server.clientsFor(ada, protocol);
        const group = await createGroup(A, [bob, cy]);
        assert.equal(group.messageRetention, undefined, "a new group has no retention");
        assert.equal(group.effectiveMessageRetention, undefined, "and keeps messages for good");

        const set = await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(3600) });
        assert.equal(msOf(set.conversation?.messageRetention), 3_600_000);
        assert.equal(msOf(set.conversation?.effectiveMessageRetention), 3_600_000);
        assert.equal(set.conversation?.name, group.name, "the name stays");
        const B = server.clientsFor(bob, protocol);
        assert.equal(msOf((await conversationOf(B, group.id)).messageRetention), 3_600_000, "members see it in GetConversation");
        const listed = (await listAllConversations(B)).find((c) => c.id === group.id);
        assert.equal(msOf(listed?.effectiveMessageRetention), 3_600_000, "and in ListConversations");

        await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(60) });
        assert.equal(msOf((await conversationOf(A, group.id)).messageRetention), 60_000, "60 seconds is the shortest");
        const renamed = await A.conversations.updateConversation({ conversationId: group.id, name: "renamed" });
        assert.equal(msOf(renamed.conversation?.messageRetention), 60_000, "a rename leaves the retention alone");
        const cleared = await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(0) });
        assert.equal(cleared.conversation?.messageRetention, undefined, "zero clears it");
        assert.equal(cleared.conversation?.effectiveMessageRetention, undefined);
      });

      it("lets either member of a DIRECT conversation set it, but not a name or description", async () => {
        const [ada, bob] = (await newUsers(server, 2, "direct")) as [string, string];
        const A = server.clientsFor(ada, protocol);
        const B = server.clientsFor(bob, protocol);
        const direct = await createDirect(A, bob);
        await B.conversations.updateConversation({ conversationId: direct.id, messageRetention: seconds(86_400) });
        assert.equal(msOf((await conversationOf(A, direct.id)).messageRetention), 86_400_000, "set by the peer, seen by the creator");
        await A.conversations.updateConversation({ conversationId: direct.id, messageRetention: seconds(7_200) });
        assert.equal(msOf((await conversationOf(B, direct.id)).messageRetention), 7_200_000);
        await expectCode(A.conversations.updateConversation({ conversationId: direct.id, name: "ours" }), Code.FailedPrecondition);
        await expectCode(
          B.conversations.updateConversation({ conversationId: direct.id, description: "words", messageRetention: seconds(600) }),
          Code.FailedPrecondition,
        );
        const after = await conversationOf(A, direct.id);
        assert.equal(after.name, "");
        assert.equal(msOf(after.messageRetention), 7_200_000, "the refused call changed nothing");
      });

      it("refuses a plain group member with PERMISSION_DENIED and a non-member with NOT_FOUND, changing nothing", async () => {
        const [ada, bob, cy, eve] = (await newUsers(server, 4, "deny")) as [string, string, string, string];
        const A = server.clientsFor(ada, protocol);
        const group = await createGroup(A, [bob, cy]);
        await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(3600) });
        await expectCode(server.clientsFor(bob, protocol).conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(0) }), Code.PermissionDenied);
        await expectCode(server.clientsFor(eve, protocol).conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(60) }), Code.NotFound);
        const direct = await createDirect(A, bob);
        await expectCode(server.clientsFor(eve, protocol).conversations.updateConversation({ conversationId: direct.id, messageRetention: seconds(60) }), Code.NotFound);
        assert.equal(msOf((await conversationOf(A, group.id)).messageRetention), 3_600_000, "unchanged");
        assert.equal((await conversationOf(A, direct.id)).messageRetention, undefined, "unchanged");
      });

      it("refuses bad durations with INVALID_ARGUMENT naming message_retention, writing nothing (not even a name sent along)", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "bad")) as [string, string, string];
        const A = server.clientsFor(ada, protocol);
        const group = await createGroup(A, [bob, cy], "before");
        await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(3600) });
        const feed = new Feed(server.clientsFor(bob, protocol), { label: "bob" });
        await feed.ready();
        for (const bad of [seconds(59), seconds(1), seconds(0, 500), seconds(-60), seconds(0, -1), seconds(120, 1), seconds(100 * 366 * 86_400)]) {
          await expectInvalidArgument(
            A.conversations.updateConversation({ conversationId: group.id, name: "after", messageRetention: bad }),
            "message_retention",
          );
        }
        const after = await conversationOf(A, group.id);
        assert.equal(after.name, "before", "the name sent with a bad retention was not written");
        assert.equal(msOf(after.messageRetention), 3_600_000, "the retention is unchanged");
        // A fence: a later change's event comes, and none of the refused calls made one.
        await A.conversations.updateConversation({ conversationId: group.id, description: "fence" });
        await feed.waitForEvent((e) => e.kind.case === "conversationUpdated" && e.kind.value.description === "fence", "the fence");
        assert.equal(feed.events.filter((e) => e.kind.case === "conversationUpdated").length, 1, "refused calls send no event");
        feed.close();
      });

      it("tells members' streams the new retention in conversation_updated", async () => {
        const [ada, bob] = (await newUsers(server, 2, "event")) as [string, string];
        const A = server.clientsFor(ada, protocol);
        const direct = await createDirect(A, bob);
        const feeds = [new Feed(A, { label: "ada" }), new Feed(server.clientsFor(bob, protocol), { label: "bob" })];
        await Promise.all(feeds.map((f) => f.ready()));
        await server.clientsFor(bob, protocol).conversations.updateConversation({ conversationId: direct.id, messageRetention: seconds(900) });
        for (const feed of feeds) {
          const { event } = await feed.waitForEvent((e) => e.kind.case === "conversationUpdated" && e.conversationId === direct.id, "conversation_updated");
          assert.ok(event.kind.case === "conversationUpdated");
          assert.equal(msOf(event.kind.value.messageRetention), 900_000, `${feed.label}: the conversation's retention`);
          assert.equal(msOf(event.kind.value.effectiveMessageRetention), 900_000, `${feed.label}: the effective one`);
          assert.equal(event.actorId, bob);
        }
        await A.conversations.updateConversation({ conversationId: direct.id, messageRetention: seconds(0) });
        for (const feed of feeds) {
          const { event } = await feed.waitForEvent(
            (e) => e.kind.case === "conversationUpdated" && e.kind.value.messageRetention === undefined,
            "conversation_updated clearing it",
          );
          assert.ok(event.kind.case === "conversationUpdated");
          assert.equal(event.kind.value.effectiveMessageRetention, undefined);
          feed.close();
        }
      });
    });
  }
});

describe("conversation message retention under a deployment retention (MESSAGE_RETENTION_DAYS=2)", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ MESSAGE_RETENTION_DAYS: "2" });
  });
  after(async () => {
    await server?.stop();
  });

  it("shows the deployment's retention as the effective one, and the conversation's where that is shorter", async () => {
    const [ada, bob, cy] = (await newUsers(server, 3, "deploy")) as [string, string, string];
    const A = server.clientsFor(ada);
    const group = await createGroup(A, [bob, cy]);
    assert.equal(group.messageRetention, undefined);
    assert.equal(msOf(group.effectiveMessageRetention), 2 * 86_400_000, "the deployment's applies");
    const longer = await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(30 * 86_400) });
    assert.equal(msOf(longer.conversation?.messageRetention), 30 * 86_400_000);
    assert.equal(msOf(longer.conversation?.effectiveMessageRetention), 2 * 86_400_000, "a longer own retention does not outlast the deployment's");
    const shorter = await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(3600) });
    assert.equal(msOf(shorter.conversation?.effectiveMessageRetention), 3_600_000, "a shorter one applies");
    const feed = new Feed(server.clientsFor(bob), { label: "bob" });
    await feed.ready();
    await A.conversations.updateConversation({ conversationId: group.id, messageRetention: seconds(0) });
    const { event } = await feed.waitForEvent((e) => e.kind.case === "conversationUpdated", "conversation_updated");
    assert.ok(event.kind.case === "conversationUpdated");
    assert.equal(event.kind.value.messageRetention, undefined);
    assert.equal(msOf(event.kind.value.effectiveMessageRetention), 2 * 86_400_000, "the event names the deployment's as the effective one");
    feed.close();
  });
});
