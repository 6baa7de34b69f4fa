/**
 * Unread counts (issue 5, "Read state"): the badge is the number of messages after my read
 * position that others sent and nobody deleted, plus how many of those mention me. The
 * expected numbers are computed here from the final messages themselves, after storms of
 * concurrent sends, edits, deletes, read marks, joins and leaves.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { createGroup, listAllForward } from "../helpers/fixtures.ts";
import { openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { edit, remove, send } from "./support/messages.ts";
import { listedConversation } from "./support/pages.ts";
import { newConversationKey, seal, type ConversationKey } from "./support/sealed.ts";

/** What the badge must say for a user, from the final messages. */
function expectedCounts(messages: readonly Message[], userId: string, readThrough: bigint): { unread: bigint; mentions: bigint } {
  let unread = 0n;
  let mentions = 0n;
  for (const m of messages) {
    if (m.seq <= readThrough || m.senderId === userId || m.deletion) continue;
    unread++;
    if (m.mentionsEveryone || m.mentionedUserIds.includes(userId)) mentions++;
  }
  return { unread, mentions };
}

describe("Unread counts", () => {
  let server: TestServer;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("counts messages after my read position that others sent and nobody deleted, and those that mention me", async () => {
        const [a, b, c] = await newUsers(server, 3, "unread");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const C = server.clientsFor(c!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const counts = async (clients: Clients) => {
          const x = await listedConversation(clients, conv.id);
          return [x?.unreadCount, x?.unreadMentionCount];
        };

        await send(A, conv.id, { body: "1 hello" });
        await send(A, conv.id, { body: "2 @b", mentionUserIds: [b!] });
        await send(C, conv.id, { body: "3 from c" });
        await send(B, conv.id, { body: "4 from b" });
        await send(A, conv.id, { body: "5 @everyone", mentionEveryone: true });
        assert.deepEqual(await counts(B), [4n, 2n], "b: four from others (own message not counted), two mention b");
        assert.deepEqual(await counts(C), [4n, 1n], "c: four from others, one @everyone");

        await remove(A, conv.id, 2n);
        assert.deepEqual(await counts(B), [3n, 1n], "a deleted mention is neither unread nor an unread mention");
        await edit(A, conv.id, 5n, "5 @everyone (edited)");
        assert.deepEqual(await counts(B), [3n, 1n], "an edit changes nothing");

        const marked = await B.conversations.markRead({ conversationId: conv.id, seq: 3n });
        assert.deepEqual([marked.unreadCount, marked.unreadMentionCount], [1n, 1n], "MarkRead answers with the counts after it");
        assert.deepEqual(await counts(B), [1n, 1n]);
        const all = await B.conversations.markRead({ conversationId: conv.id, seq: 5n });
        assert.deepEqual([all.unreadCount, all.unreadMentionCount], [0n, 0n]);
        await send(C, conv.id, { body: "6 @b again", mentionUserIds: [b!] });
        assert.deepEqual(await counts(B), [1n, 1n], "a new mention after reading everything");
        await remove(C, conv.id, 6n);
        assert.deepEqual(await counts(B), [0n, 0n], "and gone again when it is deleted");
        assert.deepEqual(await counts(A), [2n, 0n], "a: c's and b's messages, none mention a");
      });

      it("starts a new member at zero: messages from before the join are not unread", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "joinzero");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        for (let i = 0; i < 3; i++) await send(A, conv.id, { body: `before ${i}`, mentionEveryone: i === 0 });
        await A.conversations.addMembers({ conversationId: conv.id, userIds: [d!] });
        const D = server.clientsFor(d!, protocol);
        assert.deepEqual([(await listedConversation(D, conv.id))?.unreadCount, (await listedConversation(D, conv.id))?.unreadMentionCount], [0n, 0n]);
        await send(A, conv.id, { body: "welcome @d", mentionUserIds: [d!] });
        const after = await listedConversation(D, conv.id);
        assert.deepEqual([after?.unreadCount, after?.unreadMentionCount], [1n, 1n]);
      });
    });
  }

  /**
   * A storm in one group: five senders at once, each editing and deleting some of its own
   * messages as it goes, the admin deleting others', everyone marking read at random points,
   * one member leaving and coming back, one joining. Then every member's counts must match what
   * the final messages say.
   */
  async function storm(protocol: Protocol, key: ConversationKey | null): Promise<void> {
    const users = await newUsers(server, 7, key ? "sealedstorm" : "storm");
    const [admin, s1, s2, s3, s4, leaver, joiner] = users as [string, string, string, string, string, string, string];
    const senders = [admin, s1, s2, s3, s4];
    const clients = (id: string) => server.clientsFor(id, protocol);
    const conv = await createGroup(clients(admin), [s1, s2, s3, s4, leaver]);
    const watch = await openLiveFeed(clients(admin), { label: `admin/${protocol}` });
    feeds.push(watch);
    const body = (text: string) => (key ? seal(key, text) : text);
    const PER_SENDER = 18;
    const members = [...senders, leaver];

    const sendLoop = async (sender: string) => {
      const C = clients(sender);
      const mine: bigint[] = [];
      for (let i = 0; i < PER_SENDER; i++) {
        const others = members.filter((u) => u !== sender);
        const mention = randomInt(3) === 0 ? [others[randomInt(others.length)]!] : [];
        // Only current members can be mentioned: the leaver may be away right now.
        const m = await send(C, conv.id, { body: body(`${sender} #${i}`), mentionUserIds: mention.filter((u) => u !== leaver), mentionEveryone: sender === admin && i % 10 === 5 });
        mine.push(m.seq);
        if (i % 5 === 2) {
          // The admin may have deleted it meanwhile: then the edit is refused, as it should be.
          await edit(C, conv.id, mine[randomInt(mine.length)]!, body(`${sender} #${i} edited`)).catch((err: unknown) => {
            if (ConnectError.from(err).code !== Code.FailedPrecondition) throw err;
          });
        }
        if (i % 6 === 3) await remove(C, conv.id, mine[randomInt(mine.length)]!);
        if (sender === admin && i % 4 === 1) {
          // Moderation: the admin deletes the newest message it knows of (anyone's).
          await remove(C, conv.id, m.seq - BigInt(randomInt(Number(m.seq))));
        }
        if (i % 7 === 0) {
          const back = BigInt(randomInt(3));
          await C.conversations.markRead({ conversationId: conv.id, seq: m.seq > back ? m.seq - back : m.seq });
        }
      }
    };
    const membership = async () => {
      const A = clients(admin);
      await new Promise((r) => setTimeout(r, 30));
      await clients(leaver).conversations.removeMember({ conversationId: conv.id, userId: leaver });
      await new Promise((r) => setTimeout(r, 30));
      await A.conversations.addMembers({ conversationId: conv.id, userIds: [joiner] });
      await A.conversations.addMembers({ conversationId: conv.id, userIds: [leaver] });
      await A.conversations.setMemberRole({ conversationId: conv.id, userId: s1, role: MemberRole.ADMIN });
    };
    await Promise.all([...senders.map(sendLoop), membership()]);

    const messages = await listAllForward(clients(admin), conv.id);
    assert.equal(messages.length, PER_SENDER * senders.length, "every send stored once");
    assert.deepEqual(messages.map((m) => m.seq), messages.map((_, i) => BigInt(i + 1)), "a gapless sequence");
    const deleted = messages.filter((m) => m.deletion).length;
    assert.ok(deleted > 0 && deleted < messages.length, `some messages deleted (${deleted})`);

    // Where the joiner and the rejoining leaver came in: the last message before their
    // member_added in the admin's feed (events of one conversation arrive in commit order).
    await watch.waitUntil(
      () => watch.events.filter((e) => e.conversationId === conv.id && e.kind.case === "messageCreated").length >= messages.length &&
        watch.events.filter((e) => e.conversationId === conv.id && e.kind.case === "memberAdded").length >= 2,
      "every message and both member_added events on the admin's feed",
    );
    const joinedAfterSeq = (userId: string): bigint => {
      let last = 0n;
      let joinedAt = -1n;
      for (const e of watch.events) {
        if (e.conversationId !== conv.id) continue;
        if (e.kind.case === "messageCreated") last = e.kind.value.message?.seq ?? last;
        if (e.kind.case === "memberAdded" && e.kind.value.member?.userId === userId) joinedAt = last;
      }
      assert.ok(joinedAt >= 0n, `member_added for ${userId} arrived`);
      return joinedAt;
    };

    const problems: string[] = [];
    for (const u of [...senders, leaver, joiner]) {
      const x = await listedConversation(clients(u), conv.id);
      if (!x) {
        problems.push(`${u}: the conversation is not listed`);
        continue;
      }
      const from = u === leaver || u === joiner ? (joinedAfterSeq(u) > x.myLastReadSeq ? joinedAfterSeq(u) : x.myLastReadSeq) : x.myLastReadSeq;
      const want = expectedCounts(messages, u, from);
      if (x.unreadCount !== want.unread || x.unreadMentionCount !== want.mentions) {
        problems.push(`${u} (read through ${x.myLastReadSeq}, counting after ${from}): listed ${x.unreadCount} unread/${x.unreadMentionCount} mentions, expected ${want.unread}/${want.mentions}`);
      }
      // Marking read part of the way answers with exact counts too.
      const to = BigInt(messages.length - 10);
      if (to > from) {
        const res = await clients(u).conversations.markRead({ conversationId: conv.id, seq: to });
        const after = expectedCounts(messages, u, to);
        if (res.unreadCount !== after.unread || res.unreadMentionCount !== after.mentions) {
          problems.push(`${u} MarkRead(${to}): ${res.unreadCount}/${res.unreadMentionCount}, expected ${after.unread}/${after.mentions}`);
        }
      }
    }
    assert.deepEqual(problems, [], "every member's unread and mention counts match the final messages");
  }

  it("stay exact after a storm of concurrent sends, edits, deletes, read marks, joins and leaves (gRPC, text)", async function () {
    this.timeout(120_000);
    await storm("grpc", null);
  });

  it("stay exact in an end-to-end encrypted group under the same storm (Connect, envelopes)", async function () {
    this.timeout(120_000);
    await storm("connect", newConversationKey());
  });
});
