/**
 * Who finds what (issue 7): only conversations the caller is a member of right now are
 * searched. A non-member finds nothing, even naming the conversation; a member who leaves or
 * is removed finds nothing of it at once; a member who joins finds its history (as
 * ListMessages shows it). End-to-end-encrypted messages are never found, whatever their
 * envelope holds.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { absentIdLike, createDirect, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { SearchOrder } from "../../gen/parley/v1/search_service_pb.ts";
import { expectHits, expectNoHits, hitIds, saneOutcome, searchAll, transparentEnvelope, uniqueWord, waitForHits } from "./helpers.ts";

describe("SearchMessages: who finds what", () => {
  let server: TestServer;
  before(async () => {
    server = await sharedRealtimeServer();
  });

  // Once, not per protocol: it is about how many conversations, not how they are reached.
  it("searches every conversation of a user in more than a hundred", async function () {
    this.timeout(120_000);
    // Direct conversations with 101 peers: the cheapest way past the 100 a request may name.
    const [a, ...peers] = await newUsers(server, 102, "many");
    const A = server.clientsFor(a!, "connect");
    const word = uniqueWord();
    const sent: Message[] = [];
    for (let i = 0; i < peers.length; i += 20) {
      const batch = peers.slice(i, i + 20).map(async (peer) => {
        const P = server.clientsFor(peer, "connect");
        return sendText(P, (await createDirect(P, a!)).id, `${word} from ${peer}`);
      });
      sent.push(...(await Promise.all(batch)));
    }
    await waitForHits(A, { query: word }, sent, { what: "all 101 conversations searched" });
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("shows a non-member nothing of a conversation, even when they name it", async () => {
        const [a, b, c, outsider] = await newUsers(server, 4, "outsider");
        const A = server.clientsFor(a!, protocol);
        const O = server.clientsFor(outsider!, protocol);
        const secret = await createGroup(A, [b!, c!], "members only");
        const own = await createGroup(O, [b!, c!], "outsider's own");
        const word = uniqueWord();
        const hidden = await sendText(A, secret.id, `${word} is the password`);
        const visible = await sendText(O, own.id, `${word} is mine to see`);
        await waitForHits(server.clientsFor(b!, protocol), { query: word }, [hidden, visible], { what: "indexed (b is in both)" });

        await expectHits(O, { query: word }, [visible], "the outsider searching everything");
        await expectNoHits(O, { query: word, conversationIds: [secret.id] }, "the outsider naming the conversation");
        await expectHits(O, { query: word, conversationIds: [secret.id, own.id] }, [visible], "the outsider naming both");
        await expectNoHits(O, { query: word, senderId: a! }, "the outsider filtering by the member's id");
        await expectNoHits(O, { query: word, conversationIds: [absentIdLike(secret.id)] }, "an id that names no conversation");
      });

      it("shows a member who leaves nothing of the group at once, and keeps their other conversations", async () => {
        const [a, b, c] = await newUsers(server, 3, "leaver");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const left = await createGroup(A, [b!, c!], "to leave");
        const kept = await createGroup(A, [b!, c!], "to keep");
        const word = uniqueWord();
        const gone = await sendText(A, left.id, `${word} before the goodbye`);
        const stays = await sendText(A, kept.id, `${word} still here`);
        await waitForHits(B, { query: word }, [gone, stays], { what: "b finds both before leaving" });

        await B.conversations.removeMember({ conversationId: left.id, userId: b! });
        // No waiting: membership is checked when the search runs.
        await expectHits(B, { query: word }, [stays], "right after leaving");
        await expectNoHits(B, { query: word, conversationIds: [left.id] }, "naming the group left");
        await expectHits(A, { query: word }, [gone, stays], "the remaining member still finds both");
      });

      it("shows a removed member nothing of the group at once", async () => {
        const [admin, member, other] = await newUsers(server, 3, "removed");
        const A = server.clientsFor(admin!, protocol);
        const M = server.clientsFor(member!, protocol);
        const group = await createGroup(A, [member!, other!]);
        const word = uniqueWord();
        const sent = await sendText(M, group.id, `${word} from the member`);
        await waitForHits(M, { query: word }, [sent], { what: "the member finds their message" });

        await A.conversations.removeMember({ conversationId: group.id, userId: member! });
        await expectNoHits(M, { query: word }, "right after being removed");
        await expectHits(A, { query: word }, [sent], "the admin still finds it");
      });

      it("lets a member who joins find the history they can read", async () => {
        const [a, b, c, newcomer] = await newUsers(server, 4, "joiner");
        const A = server.clientsFor(a!, protocol);
        const N = server.clientsFor(newcomer!, protocol);
        const group = await createGroup(A, [b!, c!]);
        const word = uniqueWord();
        const earlier = await sendText(A, group.id, `${word} said before you came`);
        await waitForHits(A, { query: word }, [earlier], { what: "indexed" });
        await expectNoHits(N, { query: word }, "before joining");

        await A.conversations.addMembers({ conversationId: group.id, userIds: [newcomer!] });
        const history = await listAllForward(N, group.id);
        assert.ok(history.some((m) => m.id === earlier.id), "precondition: the joiner can read the earlier message");
        await expectHits(N, { query: word }, [earlier], "right after joining");
      });

      it("never finds an encrypted message, whatever its envelope holds", async () => {
        const [a, b, c] = await newUsers(server, 3, "sealed");
        const A = server.clientsFor(a!, protocol);
        const group = await createGroup(A, [b!, c!]);
        const word = uniqueWord();
        const keyWord = uniqueWord("kw");
        const sealed = (
          await A.messages.sendMessage({
            conversationId: group.id,
            clientMessageId: randomUUID(),
            content: { case: "envelope", value: transparentEnvelope(`the plaintext says ${word} ${keyWord}`) },
          })
        ).message!;
        // Sent after the envelope: once it is found, the envelope was seen by the indexer too.
        const fence: Message = await sendText(A, group.id, `${word} in the clear`);

        await waitForHits(A, { query: word }, [fence], { what: "only the plain-text message" });
        await expectNoHits(A, { query: keyWord }, "another word of the envelope");
        await expectNoHits(A, { query: `"plaintext says"` }, "the envelope's plaintext");
        assert.equal(sealed.content.case, "envelope", "precondition: the message was stored encrypted");
      });

      it("stops showing a group on the next page once the searcher has left it", async () => {
        const [a, b, c] = await newUsers(server, 3, "midwalk");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const left = await createGroup(A, [b!, c!], "left mid-walk");
        const kept = await createGroup(A, [b!, c!], "kept");
        const word = uniqueWord();
        const sent: Message[] = [];
        for (let i = 0; i < 6; i++) {
          sent.push(await sendText(A, left.id, `${word} left ${i}`), await sendText(A, kept.id, `${word} kept ${i}`));
        }
        await waitForHits(B, { query: word }, sent, { what: "b finds all twelve" });

        const first = await B.search.searchMessages({ query: word, pageSize: 3, order: SearchOrder.RECENCY });
        assert.ok(first.nextPageToken, "precondition: more pages follow");
        await B.conversations.removeMember({ conversationId: left.id, userId: b! });
        const rest = await searchAll(B, { query: word, pageSize: 3, order: SearchOrder.RECENCY, pageToken: first.nextPageToken });
        const fromLeft = rest.filter((h) => h.conversationId === left.id).map((h) => h.message?.id);
        assert.deepEqual(fromLeft, [], "pages fetched after leaving show nothing of the group left");
        assert.ok(rest.some((h) => h.conversationId === kept.id), "the other group's hits go on");
      });

      it("never lets another user's page token show them what they cannot see", async () => {
        const [a, b, c, outsider] = await newUsers(server, 4, "tokenthief");
        const A = server.clientsFor(a!, protocol);
        const group = await createGroup(A, [b!, c!]);
        const word = uniqueWord();
        const sent = await Promise.all(Array.from({ length: 4 }, (_, i) => sendText(A, group.id, `${word} ${i}`)));
        await waitForHits(A, { query: word }, sent);
        const first = await A.search.searchMessages({ query: word, pageSize: 1 });
        assert.ok(first.nextPageToken);
        const stolen = await saneOutcome(
          server.clientsFor(outsider!, protocol).search.searchMessages({ query: word, pageSize: 1, pageToken: first.nextPageToken }),
          "another user's page token",
        );
        assert.deepEqual(hitIds(stolen?.hits ?? []), [], "the outsider sees nothing through the token");
      });

      it("refuses conversation_ids that are not ids, or too many", async () => {
        const [a] = await newUsers(server, 1, "idcheck");
        const A = server.clientsFor(a!, protocol);
        await expectInvalidArgument(A.search.searchMessages({ query: "hello", conversationIds: ["not-an-id"] }), "conversation_ids");
        await expectInvalidArgument(A.search.searchMessages({ query: "hello", conversationIds: ["' or 1=1 --"] }), "conversation_ids");
        const tooMany = Array.from({ length: 101 }, () => randomUUID());
        await expectInvalidArgument(A.search.searchMessages({ query: "hello", conversationIds: tooMany }), "conversation_ids");
        const res = await A.search.searchMessages({ query: "hello", conversationIds: tooMany.slice(0, 100) });
        assert.deepEqual(res.hits, [], "100 unknown ids: allowed, nothing found");
      });
    });
  }
});
