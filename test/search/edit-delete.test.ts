/**
 * Search follows edits and deletes (issue 7, on the lifecycle of issue 5): an edit replaces
 * the old text (old words stop matching, new ones match), a delete removes the message, and a
 * replayed or out-of-order event (republished to the real JetStream events stream) never
 * brings back an old version or a deleted message — neither in results nor in the search
 * table.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { multiNodeAvailable, sharedRealtimeServer, startRealtimeServer } from "../helpers/realtime.ts";
import {
  expectHits,
  expectNoHits,
  hitIds,
  lifecycleOf,
  SEARCH_DEADLINE_MS,
  snippetOf,
  transparentEnvelope,
  uniqueWord,
  waitForHits,
  type Lifecycle,
} from "./helpers.ts";
import { searchRowsHolding, wipeSearchTable } from "./search-table.ts";
import { createdEventOf, editedEventOf, EventReplayer } from "./replay.ts";

describe("SearchMessages: edits and deletes", () => {
  let server: TestServer;
  before(async () => {
    server = await sharedRealtimeServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      let A: Clients;
      let B: Clients;
      let conversationId: string;
      let lifecycle: Lifecycle;

      beforeEach(async () => {
        const [a, b, c] = await newUsers(server, 3, "lifecycle");
        A = server.clientsFor(a!, protocol);
        B = server.clientsFor(b!, protocol);
        lifecycle = lifecycleOf(A);
        conversationId = (await createGroup(A, [b!, c!])).id;
      });

      it("replaces the old text on edit: old words stop matching, new words match", async () => {
        const [before, after, shared] = [uniqueWord("eo"), uniqueWord("en"), uniqueWord("es")];
        const sent = await sendText(A, conversationId, `${before} ${shared}`);
        await waitForHits(B, { query: before }, [sent], { what: "the first version found" });

        const edited = await lifecycle.editText(conversationId, sent.seq, `${after} ${shared}`);
        assert.equal(edited.version, 2, "precondition: the edit made version 2");
        // Hits of an older indexed version are dropped when the search runs: at once.
        await expectNoHits(B, { query: before }, "the old word right after the edit");
        const [hit] = await waitForHits(B, { query: after }, [sent], { what: "the new word" });
        assert.equal(hit!.message?.version, 2, "the hit is the current version");
        assert.deepEqual(hit!.message?.content, { case: "text", value: `${after} ${shared}` });
        assert.deepEqual(snippetOf(hit!).highlighted, [after]);
        const both = await B.search.searchMessages({ query: shared });
        assert.deepEqual(hitIds(both.hits), [sent.id], "one hit for the message, not one per version");
        await expectNoHits(B, { query: `${before} ${shared}` }, "the old text");
      });

      it("keeps only the latest of quick successive edits, even one right after the send", async () => {
        const words = [uniqueWord("v1"), uniqueWord("v2"), uniqueWord("v3"), uniqueWord("v4")];
        const sent = await sendText(A, conversationId, `version ${words[0]}`);
        for (const w of words.slice(1)) await lifecycle.editText(conversationId, sent.seq, `version ${w}`);
        const [hit] = await waitForHits(B, { query: words[3]! }, [sent], { what: "the last version" });
        assert.equal(hit!.message?.version, 4);
        for (const old of words.slice(0, 3)) await expectNoHits(B, { query: old }, `an earlier version's word ${old}`);
        const all = await B.search.searchMessages({ query: "version" });
        assert.deepEqual(hitIds(all.hits), [sent.id], "exactly one hit for the message");
      });

      it("removes a deleted message at once, also for a moderating admin's delete", async () => {
        const word = uniqueWord("dw");
        const own = await sendText(A, conversationId, `${word} mine`);
        const theirs = await sendText(B, conversationId, `${word} theirs`);
        const kept = await sendText(B, conversationId, `${word} kept`);
        await waitForHits(B, { query: word }, [own, theirs, kept], { what: "all three found" });

        const tombstone = await lifecycle.delete(conversationId, own.seq);
        assert.ok(tombstone.deletion, "precondition: the message is a tombstone");
        await lifecycle.delete(conversationId, theirs.seq); // A created the group: an admin.
        for (const reader of [A, B]) {
          const res = await reader.search.searchMessages({ query: word });
          assert.deepEqual(hitIds(res.hits), [kept.id], "right after the deletes only the kept message is found");
        }
      });

      it("never finds a message deleted right after it was sent", async () => {
        const word = uniqueWord("dq");
        const doomed = await sendText(A, conversationId, `${word} doomed`);
        await lifecycle.delete(conversationId, doomed.seq);
        // Sent after the delete: once it is found, the indexer has seen the delete too.
        const fence = await sendText(A, conversationId, `${word} fence`);
        await waitForHits(B, { query: word }, [fence], { what: "only the fence" });
        await expectNoHits(B, { query: "doomed" }, "the deleted message's own word");
      });

      it("never finds an encrypted message after it is edited", async () => {
        const [first, second] = [uniqueWord("s1"), uniqueWord("s2")];
        const sealed = (
          await A.messages.sendMessage({
            conversationId,
            clientMessageId: randomUUID(),
            content: { case: "envelope", value: transparentEnvelope(first) },
          })
        ).message!;
        const edited = await lifecycle.editEnvelope(conversationId, sealed.seq, transparentEnvelope(second));
        assert.equal(edited.version, 2, "precondition: the envelope was replaced");
        const fence = await sendText(A, conversationId, `${second} in the clear`);
        await waitForHits(B, { query: second }, [fence], { what: "only the plain-text message" });
        await expectNoHits(B, { query: first }, "the first envelope's words");
      });

      it("takes the deleted text out of the search table (PostgreSQL)", async function () {
        if (!process.env.DATABASE_URL) this.skip(); // the embedded database lives inside the server
        const word = uniqueWord("dt");
        const sent = await sendText(A, conversationId, `${word} to be erased`);
        await waitForHits(B, { query: word }, [sent]);
        assert.ok((await searchRowsHolding(server, word)) > 0, "precondition: the search table holds the text");
        await lifecycle.delete(conversationId, sent.seq);
        await eventually(async () => (await searchRowsHolding(server, word)) === 0, "the deleted text gone from message_search", SEARCH_DEADLINE_MS);
      });

      it("replaces the text of an edited message in the search table (PostgreSQL)", async function () {
        if (!process.env.DATABASE_URL) this.skip(); // the embedded database lives inside the server
        const [before, after] = [uniqueWord("to"), uniqueWord("tn")];
        const sent = await sendText(A, conversationId, before);
        await waitForHits(B, { query: before }, [sent]);
        await lifecycle.editText(conversationId, sent.seq, after);
        await waitForHits(B, { query: after }, [sent]);
        assert.equal(await searchRowsHolding(server, before), 0, "the old text is not kept in message_search");
      });
    });
  }

  describe("replayed and out-of-order events (real NATS)", () => {
    let own: TestServer;
    let replayer: EventReplayer;
    let A: Clients;
    let B: Clients;
    let conversationId: string;
    let lifecycle: Lifecycle;

    before(async function () {
      if (!multiNodeAvailable()) this.skip(); // needs PostgreSQL and the real NATS to republish to
      // A server of its own: its events stream holds only what these tests did.
      own = await startRealtimeServer();
      replayer = await EventReplayer.forServer(own);
      const [a, b, c] = await newUsers(own, 3, "replay");
      A = own.clientsFor(a!, "connect");
      B = own.clientsFor(b!, "grpc");
      lifecycle = lifecycleOf(A);
      conversationId = (await createGroup(A, [b!, c!])).id;
    });
    after(async () => {
      await replayer?.close();
      await own?.stop();
    });

    /** Sends a message and waits until it is found: the indexer has seen all that came before. */
    async function fence(): Promise<void> {
      const word = uniqueWord("fence");
      const sent = await sendText(A, conversationId, word);
      await waitForHits(B, { query: word }, [sent], { what: "the fence message" });
    }

    it("a replayed event reaches the indexer (so the checks below can fail)", async () => {
      const word = uniqueWord("rr");
      const sent = await sendText(A, conversationId, word);
      await waitForHits(B, { query: word }, [sent], { what: "indexed" });
      await wipeSearchTable(own);
      await expectNoHits(B, { query: word }, "precondition: the wiped index finds nothing");

      await replayer.republish(await replayer.find(createdEventOf(sent.id), "message_created"));
      await waitForHits(B, { query: word }, [sent], { what: "the message indexed again from the replayed event" });
    });

    it("a replayed create does not bring back the text an edit replaced", async () => {
      const [before, after] = [uniqueWord("ro"), uniqueWord("rn")];
      const sent = await sendText(A, conversationId, `${before} original`);
      await lifecycle.editText(conversationId, sent.seq, `${after} edited`);
      await waitForHits(B, { query: after }, [sent], { what: "the edit indexed" });

      await replayer.republish(await replayer.find(createdEventOf(sent.id), "message_created of the edited message"));
      await fence();
      await expectHits(B, { query: after }, [sent], "the edited text, still");
      await expectNoHits(B, { query: before }, "the replaced text");
      assert.equal(await searchRowsHolding(own, before), 0, "message_search holds the replaced text again");
    });

    it("an older edit arriving after a newer one does not win", async () => {
      const words = [uniqueWord("o1"), uniqueWord("o2"), uniqueWord("o3")];
      const sent = await sendText(A, conversationId, words[0]!);
      await lifecycle.editText(conversationId, sent.seq, words[1]!);
      await lifecycle.editText(conversationId, sent.seq, words[2]!);
      await waitForHits(B, { query: words[2]! }, [sent], { what: "version 3 indexed" });

      await replayer.republish(await replayer.find(editedEventOf(sent.id, 2), "message_edited to version 2"));
      await replayer.republish(await replayer.find(createdEventOf(sent.id), "message_created"));
      await fence();
      await expectHits(B, { query: words[2]! }, [sent], "version 3, still");
      for (const old of words.slice(0, 2)) {
        await expectNoHits(B, { query: old }, `the older version's word ${old}`);
        assert.equal(await searchRowsHolding(own, old), 0, `message_search holds the older version's word ${old} again`);
      }
    });

    it("replayed create and edit events do not resurrect a deleted message", async () => {
      const [first, second] = [uniqueWord("x1"), uniqueWord("x2")];
      const sent = await sendText(A, conversationId, first);
      await lifecycle.editText(conversationId, sent.seq, second);
      await waitForHits(B, { query: second }, [sent], { what: "the edit indexed" });
      await lifecycle.delete(conversationId, sent.seq);
      await fence();
      assert.equal(await searchRowsHolding(own, second), 0, "precondition: the delete emptied the search table of it");

      await replayer.republish(await replayer.find(createdEventOf(sent.id), "message_created of the deleted message"));
      await replayer.republish(await replayer.find(editedEventOf(sent.id, 2), "message_edited of the deleted message"));
      await fence();
      for (const word of [first, second]) {
        await expectNoHits(B, { query: word }, `the deleted message's word ${word}`);
        assert.equal(await searchRowsHolding(own, word), 0, `message_search holds the deleted message's word ${word} again`);
      }
    });
  });
});
