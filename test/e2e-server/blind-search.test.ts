/**
 * Blind-index search: members of an encrypted conversation with blind_search attach opaque
 * tokens (8 to 32 bytes, at most 256) to their envelopes, and SearchMessages with
 * blind_queries finds the messages of the query's conversation and key epoch that carry all
 * its tokens, newest first, with the sender and date filters applied. Tokens are refused
 * anywhere else, replaced on edit and dropped on delete; a non-member finds nothing and learns
 * nothing. The tokens here are random bytes: the server cannot tell them from real ones.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { SearchHit, SearchMessagesRequestSchema } from "../../gen/parley/v1/search_service_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { absentIdLike, clockPast, createGroup, listAllForward } from "../helpers/fixtures.ts";
import {
  assertEnvelope,
  blindToken,
  createEncrypted,
  e2eClientsFor,
  sealedEnvelope,
  sendEnvelope,
  type E2eClients,
  type EnvelopeInit,
} from "../helpers/e2e.ts";

type SearchRequest = MessageInitShape<typeof SearchMessagesRequestSchema>;

/** How long a written message may take to be found before a test fails. */
const BLIND_DEADLINE_MS = 10_000;

/** Every hit of the request, following next_page_token. */
async function searchAll(clients: Pick<E2eClients, "search">, request: SearchRequest): Promise<SearchHit[]> {
  const hits: SearchHit[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1000; pages++) {
    const res = await clients.search.searchMessages({ pageSize: 100, ...request, pageToken });
    hits.push(...res.hits);
    if (!res.nextPageToken) return hits;
    pageToken = res.nextPageToken;
  }
  throw new Error("SearchMessages never stopped returning a next_page_token");
}

/** Names messages by seq (and conversation tail) in failure messages. */
function names(hits: readonly { id: string }[], all: readonly Message[]): string {
  return `[${hits.map((h) => {
    const m = all.find((x) => x.id === h.id);
    return m ? `${m.conversationId.slice(-4)}#${m.seq}` : `unknown ${h.id}`;
  }).join(", ")}]`;
}

/**
 * Polls until the request's hits are exactly these messages in this order (newest first, as
 * blind hits come). Blind tokens are written with the message, so this normally holds at once.
 */
async function expectBlindHits(
  clients: Pick<E2eClients, "search">,
  request: SearchRequest,
  expected: readonly Message[],
  what: string,
  options: { pageSize?: number } = {},
): Promise<SearchHit[]> {
  const deadline = Date.now() + BLIND_DEADLINE_MS;
  const want = expected.map((m) => m.id);
  for (let delay = 25; ; delay = Math.min(delay * 2, 200)) {
    const hits = await searchAll(clients, { ...request, ...(options.pageSize ? { pageSize: options.pageSize } : {}) });
    const got = hits.map((h) => h.message?.id ?? "(no message)");
    if (got.length === want.length && got.every((id, i) => id === want[i])) return hits;
    if (Date.now() >= deadline) {
      assert.fail(`${what}: expected ${names(expected, expected)}, got ${names(got.map((id) => ({ id })), expected)}`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * Sends and waits until the clock is past the message's created_at, so that "newest first"
 * names one order even where the server's timestamps have millisecond precision.
 */
async function sendApart(...args: Parameters<typeof sendEnvelope>): Promise<Message> {
  const m = await sendEnvelope(...args);
  await clockPast(m.createdAt);
  return m;
}

/** A blind query of one conversation and epoch. */
function blind(conversationId: string, keyEpoch: number, ...tokens: Uint8Array[]) {
  return { conversationId, keyEpoch, tokens };
}

describe("blind-index search of encrypted conversations", () => {
  let server: TestServer;
  before(async () => {
    server = await startRealtimeServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      /** Ada, Bob and Cy in an encrypted group with blind search. */
      async function blindGroup(prefix: string) {
        const [ada, bob, cy] = (await newUsers(server, 3, prefix)) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
        return { ada, bob, cy, A, B, conv };
      }

      it("refuses search_tokens in a plain conversation and in an encrypted one without blind search, using up no seq", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "notblind")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const plain = await createGroup(A, [bob, cy]);
        const sealed = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        await expectInvalidArgument(
          A.messages.sendMessage({ conversationId: plain.id, clientMessageId: randomUUID(), content: { case: "text", value: "hello" }, searchTokens: [blindToken()] }),
          "search_tokens",
        );
        await expectInvalidArgument(sendEnvelope(A, sealed.id, sealedEnvelope(1), { searchTokens: [blindToken()] }), "search_tokens");
        const first = await sendApart(A, sealed.id, sealedEnvelope(1));
        assert.equal(first.seq, 1n, "the refused send used up no seq");
        await expectInvalidArgument(
          A.messages.editMessage({ conversationId: sealed.id, seq: first.seq, content: { case: "envelope", value: sealedEnvelope(1) }, searchTokens: [blindToken()] }),
          "search_tokens",
        );
        assert.equal((await A.messages.getMessage({ conversationId: sealed.id, seq: first.seq })).message?.version, 1, "the refused edit changed nothing");
        assert.equal((await listAllForward(A, plain.id)).length, 0, "nothing stored in the plain group");
      });

      it("takes tokens of 8 to 32 bytes, up to 256 of them, and refuses others, naming search_tokens", async () => {
        const w = await blindGroup("sizes");
        const bad: Array<[string, Uint8Array[]]> = [
          ["an empty token", [blindToken(), new Uint8Array(0)]],
          ["a 7-byte token", [blindToken(7)]],
          ["a 33-byte token", [blindToken(), blindToken(33)]],
          ["257 tokens", Array.from({ length: 257 }, () => blindToken())],
        ];
        for (const [what, searchTokens] of bad) {
          await expectInvalidArgument(sendEnvelope(w.A, w.conv.id, sealedEnvelope(1), { searchTokens }), "search_tokens").catch((err: Error) =>
            assert.fail(`${what}: ${err.message}`),
          );
        }
        const edge = [blindToken(8), blindToken(32)];
        const many = Array.from({ length: 256 }, () => blindToken());
        const m1 = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: edge });
        assert.equal(m1.seq, 1n, "the refused sends used up no seq");
        const m2 = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: many });
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, edge[0]!)] }, [m1], "an 8-byte token");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, edge[1]!)] }, [m1], "a 32-byte token");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, many[255]!)] }, [m2], "the 256th token");
        for (const [what, searchTokens] of bad) {
          await expectInvalidArgument(
            w.A.messages.editMessage({ conversationId: w.conv.id, seq: m1.seq, content: { case: "envelope", value: sealedEnvelope(1) }, searchTokens }),
            "search_tokens",
          ).catch((err: Error) => assert.fail(`edit with ${what}: ${err.message}`));
        }
      });

      it("finds exactly the messages carrying all of a query's tokens, newest first, with no snippet", async () => {
        const w = await blindGroup("finds");
        const [t1, t2, t3, never] = [blindToken(), blindToken(24), blindToken(), blindToken()];
        const e1 = sealedEnvelope(1), e3 = sealedEnvelope(1);
        const m1 = await sendApart(w.A, w.conv.id, e1, { searchTokens: [t1!, t2!] });
        const m2 = await sendApart(w.B, w.conv.id, sealedEnvelope(1), { searchTokens: [t1!] });
        const m3 = await sendApart(w.A, w.conv.id, e3, { searchTokens: [t2!, t3!] });
        await sendApart(w.B, w.conv.id, sealedEnvelope(1));
        const q = (...tokens: Uint8Array[]) => ({ blindQueries: [blind(w.conv.id, 1, ...tokens)] });

        const hits = await expectBlindHits(w.B, q(t1!), [m2, m1], "t1, newest first");
        for (const h of hits) {
          assert.equal(h.conversationId, w.conv.id, "hit conversation_id");
          assert.deepEqual(h.snippet, [], "a blind hit carries no snippet");
        }
        assertEnvelope(hits[1]!.message, e1, "the hit's message is the stored envelope");
        await expectBlindHits(w.A, q(t1!, t2!), [m1], "t1 and t2: only the message with both");
        await expectBlindHits(w.A, q(t2!), [m3, m1], "t2");
        await expectBlindHits(w.A, q(t3!), [m3], "t3");
        await expectBlindHits(w.A, q(t1!, t3!), [], "t1 and t3: no message has both");
        await expectBlindHits(w.A, q(never!), [], "a token no message carries");
        await expectBlindHits(w.A, q(t1!, t2!, t3!), [], "all three");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, t2!)] }, [m3, m1], "t2, one hit per page", { pageSize: 1 });
      });

      it("matches only in the query's conversation and key epoch", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "scope")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const x = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan], { blindSearch: true });
        const y = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
        const t = blindToken();
        const inX1 = await sendApart(A, x.id, sealedEnvelope(1), { searchTokens: [t] });
        const inY = await sendApart(A, y.id, sealedEnvelope(1), { searchTokens: [t] });
        await A.conversations.removeMember({ conversationId: x.id, userId: dan });
        const inX2 = await sendApart(A, x.id, sealedEnvelope(2), { searchTokens: [t] });

        await expectBlindHits(A, { blindQueries: [blind(x.id, 1, t)] }, [inX1], "x at epoch 1");
        await expectBlindHits(A, { blindQueries: [blind(x.id, 2, t)] }, [inX2], "x at epoch 2");
        await expectBlindHits(A, { blindQueries: [blind(y.id, 1, t)] }, [inY], "y at epoch 1");
        await expectBlindHits(A, { blindQueries: [blind(y.id, 2, t)] }, [], "y at epoch 2 (y never got there)");
        await expectBlindHits(A, { blindQueries: [blind(x.id, 1, t), blind(x.id, 2, t)] }, [inX2, inX1], "x at both epochs, newest first");
        await expectBlindHits(
          A,
          { blindQueries: [blind(x.id, 1, t), blind(y.id, 1, t), blind(x.id, 2, t)] },
          [inX2, inY, inX1],
          "every query, newest first",
        );
        await expectBlindHits(A, { blindQueries: [blind(x.id, 1, t)], conversationIds: [y.id] }, [inX1], "conversation_ids is ignored");
      });

      it("applies the sender and date filters", async () => {
        const w = await blindGroup("filters");
        const t = blindToken();
        const m1 = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        const m2 = await sendApart(w.B, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        const m3 = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        const blindQueries = [blind(w.conv.id, 1, t)];
        const at = (m: Message): Timestamp => m.createdAt!;

        await expectBlindHits(w.A, { blindQueries }, [m3, m2, m1], "no filter");
        await expectBlindHits(w.A, { blindQueries, senderId: w.ada }, [m3, m1], "sent by ada");
        await expectBlindHits(w.A, { blindQueries, senderId: w.bob }, [m2], "sent by bob");
        await expectBlindHits(w.A, { blindQueries, senderId: w.cy }, [], "sent by cy");
        await expectBlindHits(w.A, { blindQueries, createdAfter: at(m2) }, [m3, m2], "at or after m2 (inclusive)");
        await expectBlindHits(w.A, { blindQueries, createdBefore: at(m2) }, [m1], "before m2 (exclusive)");
        await expectBlindHits(w.A, { blindQueries, createdAfter: at(m1), createdBefore: at(m3), senderId: w.ada }, [m1], "ada, from m1 to before m3");
      });

      it("finds nothing for a non-member, exactly as for a conversation that does not exist", async () => {
        const w = await blindGroup("outsider");
        const [outsider] = (await newUsers(server, 1, "outsider")) as [string];
        const O = e2eClientsFor(server, outsider, protocol);
        const t = blindToken();
        const m = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        await expectBlindHits(w.B, { blindQueries: [blind(w.conv.id, 1, t)] }, [m], "a member finds it (the fence)");

        const asOutsider = await O.search.searchMessages({ blindQueries: [blind(w.conv.id, 1, t)] });
        const absent = await O.search.searchMessages({ blindQueries: [blind(absentIdLike(w.conv.id), 1, t)] });
        assert.deepEqual(asOutsider.hits, [], "the outsider finds nothing");
        assert.equal(asOutsider.nextPageToken, "");
        assert.deepEqual(absent.hits, [], "nor in a conversation that does not exist");
        assert.equal(absent.nextPageToken, "");

        await w.A.conversations.removeMember({ conversationId: w.conv.id, userId: w.bob });
        await expectBlindHits(w.B, { blindQueries: [blind(w.conv.id, 1, t)] }, [], "a removed member finds nothing any more");
      });

      it("replaces a message's tokens when it is edited", async () => {
        const w = await blindGroup("edit");
        const [old1, old2, fresh] = [blindToken(), blindToken(), blindToken()];
        const m = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [old1!, old2!] });
        const other = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [old1!] });
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, old2!)] }, [m], "before the edit");

        const replacement: EnvelopeInit = sealedEnvelope(1, "edited");
        await w.A.messages.editMessage({ conversationId: w.conv.id, seq: m.seq, content: { case: "envelope", value: replacement }, searchTokens: [fresh!, old1!] });
        const hits = await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, fresh!)] }, [m], "the new token finds it");
        assertEnvelope(hits[0]!.message, replacement, "the hit shows the edited envelope");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, old2!)] }, [], "the dropped token does not");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, old1!)] }, [other, m], "a kept token still does");

        await w.A.messages.editMessage({ conversationId: w.conv.id, seq: m.seq, content: { case: "envelope", value: sealedEnvelope(1) } });
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, old1!)] }, [other], "an edit without tokens leaves none on the message");
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, fresh!)] }, [], "not even the previous version's");
      });

      it("drops a deleted message from the results", async () => {
        const w = await blindGroup("delete");
        const t = blindToken();
        const doomed = await sendApart(w.A, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        const kept = await sendApart(w.B, w.conv.id, sealedEnvelope(1), { searchTokens: [t] });
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, t)] }, [kept, doomed], "before the delete");
        await w.A.messages.deleteMessage({ conversationId: w.conv.id, seq: doomed.seq });
        await expectBlindHits(w.A, { blindQueries: [blind(w.conv.id, 1, t)] }, [kept], "after the delete");
      });

      it("refuses a search with both query and blind_queries, and blind queries over the limits", async () => {
        const w = await blindGroup("badquery");
        const q = (tokens: Uint8Array[]) => blind(w.conv.id, 1, ...tokens);
        await expectInvalidArgument(w.A.search.searchMessages({ query: "hello", blindQueries: [q([blindToken()])] }), "query", "blind_queries");
        await expectInvalidArgument(w.A.search.searchMessages({ blindQueries: [q([])] }), "blind_queries");
        await expectInvalidArgument(w.A.search.searchMessages({ blindQueries: [q(Array.from({ length: 17 }, () => blindToken()))] }), "blind_queries");
        await expectInvalidArgument(w.A.search.searchMessages({ blindQueries: Array.from({ length: 65 }, () => q([blindToken()])) }), "blind_queries");
        const fine = await w.A.search.searchMessages({ blindQueries: Array.from({ length: 64 }, () => q(Array.from({ length: 16 }, () => blindToken()))) });
        assert.deepEqual(fine.hits, [], "64 queries of 16 tokens are allowed");
      });
    });
  }
});
