/**
 * SearchMessages (issue 7): a message is found after it is sent; the query language (words,
 * "phrases", -exclusions, case and accents ignored); each filter alone and combined; relevance
 * then recency, or recency only; pagination without duplicates or gaps; snippets and scores.
 *
 * Every test uses fresh users, so a search only ever sees the messages the test sent. Each
 * test first waits until everything it sent is indexed (a query that matches it all), then
 * checks exact result sets at once.
 */
import assert from "node:assert/strict";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { SearchOrder, type SearchHit } from "../../gen/parley/v1/search_service_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { clockPast, createDirect, createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { expectHits, hitIds, Names, orderName, searchAll, snippetOf, uniqueWord, waitForHits, type SearchRequest } from "./helpers.ts";

describe("SearchMessages", () => {
  let server: TestServer;
  before(async () => {
    server = await sharedRealtimeServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("finds a message after it is sent, for every member, with its conversation, a snippet and a score", async () => {
        const [a, b, c] = await newUsers(server, 3, "found");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const word = uniqueWord();
        const sent = await sendText(A, conv.id, `meet me at the ${word} tonight`);

        for (const reader of [a!, b!, c!]) {
          const [hit] = await waitForHits(server.clientsFor(reader, protocol), { query: word }, [sent], { what: `${reader} searching` });
          assert.equal(hit!.conversationId, conv.id, "conversation_id");
          const m = hit!.message!;
          assert.equal(m.id, sent.id);
          assert.equal(m.conversationId, conv.id);
          assert.equal(m.seq, sent.seq);
          assert.equal(m.senderId, a);
          assert.deepEqual(m.content, { case: "text", value: `meet me at the ${word} tonight` });
          assert.equal(ms(m.createdAt), ms(sent.createdAt));
          assert.ok(hit!.score > 0, `score ${hit!.score} is positive`);
          const snippet = snippetOf(hit!);
          assert.ok(snippet.text.includes(word), `snippet "${snippet.text}" shows the word`);
          assert.deepEqual(snippet.highlighted, [word], "the matched word is highlighted, nothing else");
        }
      });

      it("shows each searcher the hit's reactions as they see them", async () => {
        const [a, b, c] = await newUsers(server, 3, "reacts");
        const A = server.clientsFor(a!, protocol);
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const word = uniqueWord();
        const sent = await sendText(A, conv.id, `${word} react to this`);
        await B.messages.addReaction({ conversationId: conv.id, seq: sent.seq, emoji: "👍" });
        for (const [clients, mine] of [[A, false], [B, true]] as const) {
          const [hit] = await waitForHits(clients, { query: word }, [sent]);
          assert.deepEqual(
            hit!.message?.reactions.map((r) => ({ emoji: r.emoji, count: r.count, reactedByMe: r.reactedByMe })),
            [{ emoji: "👍", count: 1n, reactedByMe: mine }],
          );
        }
      });

      it("finds messages of direct conversations too", async () => {
        const [a, b] = await newUsers(server, 2, "direct");
        const A = server.clientsFor(a!, protocol);
        const conv = await createDirect(A, b!);
        const word = uniqueWord();
        const sent = await sendText(server.clientsFor(b!, protocol), conv.id, `${word} between us`);
        await waitForHits(A, { query: word }, [sent]);
      });

      describe("query language", () => {
        let clients: Clients;
        const [w1, w2, w3, tag] = [uniqueWord("qa"), uniqueWord("qb"), uniqueWord("qc"), uniqueWord("qt")];
        const m: Record<string, Message> = {};
        const names = new Names();
        const expectQuery = (query: string, expected: string[], what = `query ${JSON.stringify(query)}`) =>
          expectHits(clients, { query }, expected.map((k) => m[k]!), what, names);

        before(async () => {
          const [a, b, c] = await newUsers(server, 3, "syntax");
          clients = server.clientsFor(a!, protocol);
          const conv = await createGroup(clients, [b!, c!]);
          const texts: Record<string, string> = {
            inOrder: `${w1} ${w2} ${w3} ${tag}`,
            reversed: `${w2} ${w1}, reversed ${tag}`,
            onlyFirst: `(${w1}) only! ${tag}`,
            lastTwo: `${w3} and ${w2} ${tag}`,
            shouty: `${w1.toUpperCase()} IS LOUD ${tag}`,
            accents: `Crème brûlée au CAFÉ ${tag}`,
            plainCafe: `une creme au cafe ${tag}`,
          };
          for (const [key, text] of Object.entries(texts)) m[key] = await sendText(clients, conv.id, text);
          names.add(...Object.values(m));
          await waitForHits(clients, { query: tag }, Object.values(m), { names, what: "everything indexed" });
        });

        it("requires every plain word, in any order, ignoring case and punctuation", async () => {
          await expectQuery(w1, ["inOrder", "reversed", "onlyFirst", "shouty"]);
          await expectQuery(`${w2} ${w1}`, ["inOrder", "reversed"]);
          await expectQuery(`${w1.toUpperCase()} ${w2}`, ["inOrder", "reversed"]);
          await expectQuery(`${w1} ${w2} ${w3}`, ["inOrder"]);
          await expectQuery(`${w1} nosuchwordanywhere`, []);
        });

        it("matches a quoted phrase only when its words are adjacent and in order", async () => {
          await expectQuery(`"${w1} ${w2}"`, ["inOrder"]);
          await expectQuery(`"${w2} ${w1}"`, ["reversed"]);
          await expectQuery(`"${w2} ${w3}"`, ["inOrder"]);
          await expectQuery(`"${w1} ${w3}"`, [], "words present but not adjacent");
          await expectQuery(`"${w3} ${w2}"`, [], "adjacent words the other way round");
          await expectQuery(`"${w1} ${w2}" ${w3}`, ["inOrder"]);
        });

        it("leaves out messages with an excluded word or phrase", async () => {
          await expectQuery(`${w1} -${w3}`, ["reversed", "onlyFirst", "shouty"]);
          await expectQuery(`${w2} -"${w2} ${w3}"`, ["reversed", "lastTwo"]);
          await expectQuery(`${tag} -${w1} -${w2}`, ["accents", "plainCafe"]);
          await expectQuery(`${w1} -${w1}`, [], "a word both required and excluded");
        });

        it("ignores accents both ways: cafe finds Café, café finds cafe", async () => {
          await expectQuery(`cafe ${tag}`, ["accents", "plainCafe"]);
          await expectQuery(`CAFÉ ${tag}`, ["accents", "plainCafe"]);
          await expectQuery(`creme brulee ${tag}`, ["accents"]);
          await expectQuery(`"crème brûlée" ${tag}`, ["accents"]);
        });

        it("highlights the words as written in the message, phrases included", async () => {
          const hits = await searchAll(clients, { query: `cafe ${tag}` });
          const accented = hits.find((h) => h.message?.id === m.accents!.id);
          assert.ok(accented, "the accented message is a hit");
          assert.deepEqual(snippetOf(accented).highlighted.sort(), ["café", tag].sort());

          const [phraseHit] = await searchAll(clients, { query: `"${w1} ${w2}"` });
          assert.equal(phraseHit?.message?.id, m.inOrder!.id);
          const highlighted = snippetOf(phraseHit!).highlighted.join(" ");
          assert.equal(highlighted, `${w1} ${w2}`, "the phrase is highlighted (as one part or word by word), nothing else");
        });
      });

      describe("filters", () => {
        let reader: Clients;
        let conv1: string;
        let conv2: string;
        let a: string;
        let b: string;
        const word = uniqueWord("fw");
        // m1 a@conv1, m2 b@conv1, m3 a@conv2, m4 b@conv2, each strictly later than the one before.
        const m: Message[] = [];
        const names = new Names();
        const expectFilter = (request: Omit<SearchRequest, "query">, expected: number[], what: string) =>
          expectHits(reader, { query: word, ...request }, expected.map((i) => m[i - 1]!), what, names);
        const at = (i: number): Timestamp => m[i - 1]!.createdAt!;

        before(async () => {
          const users = await newUsers(server, 3, "filters");
          [a, b] = users as [string, string];
          const A = server.clientsFor(a, protocol);
          const B = server.clientsFor(b, protocol);
          conv1 = (await createGroup(A, [b, users[2]!], "one")).id;
          conv2 = (await createGroup(B, [a, users[2]!], "two")).id;
          reader = server.clientsFor(users[2]!, protocol);
          for (const [clients, conv] of [[A, conv1], [B, conv1], [A, conv2], [B, conv2]] as const) {
            if (m.length > 0) await clockPast(m[m.length - 1]!.createdAt);
            m.push(await sendText(clients, conv, `${word} number ${m.length + 1}`));
          }
          // Messages that match every filter but not the query.
          await sendText(A, conv1, "nothing to see here");
          await sendText(B, conv2, "nothing to see there");
          names.add(...m);
          await waitForHits(reader, { query: word }, m, { names, what: "everything indexed" });
        });

        it("by conversation", async () => {
          await expectFilter({ conversationIds: [conv1] }, [1, 2], "conversation one");
          await expectFilter({ conversationIds: [conv2] }, [3, 4], "conversation two");
          await expectFilter({ conversationIds: [conv2, conv1] }, [1, 2, 3, 4], "both conversations");
          await expectFilter({ conversationIds: [conv1, conv1, conv1] }, [1, 2], "one conversation named thrice: each hit once");
        });

        it("by sender", async () => {
          await expectFilter({ senderId: a }, [1, 3], "sender a");
          await expectFilter({ senderId: b }, [2, 4], "sender b");
          await expectFilter({ senderId: "someone-who-never-wrote" }, [], "a sender with no messages");
          await expectFilter({ senderId: a.toUpperCase() }, [], "sender ids are exact, not case-folded");
          await expectInvalidArgument(reader.search.searchMessages({ query: word, senderId: "u".repeat(129) }), "sender_id");
        });

        it("by date: created_after inclusive, created_before exclusive", async () => {
          await expectFilter({ createdAfter: at(2) }, [2, 3, 4], "at or after m2");
          await expectFilter({ createdAfter: timestampFromMs(ms(at(2)) + 1) }, [3, 4], "after m2 (by a millisecond)");
          await expectFilter({ createdBefore: at(3) }, [1, 2], "before m3");
          await expectFilter({ createdBefore: timestampFromMs(ms(at(3)) + 1) }, [1, 2, 3], "before just after m3");
          await expectFilter({ createdAfter: at(2), createdBefore: at(4) }, [2, 3], "from m2 to before m4");
          await expectFilter({ createdAfter: timestampFromMs(ms(at(4)) + 1) }, [], "after everything");
          await expectFilter({ createdBefore: at(1) }, [], "before everything");
        });

        it("combined", async () => {
          await expectFilter({ conversationIds: [conv2], senderId: b }, [4], "conversation two, sender b");
          await expectFilter({ conversationIds: [conv1], senderId: b, createdBefore: at(3) }, [2], "conversation one, sender b, before m3");
          await expectFilter({ conversationIds: [conv1], senderId: a, createdAfter: at(2) }, [], "conversation one, sender a, from m2");
          await expectFilter({ senderId: a, createdAfter: at(2) }, [3], "sender a from m2");
          await expectFilter(
            { conversationIds: [conv1, conv2], senderId: a, createdAfter: at(2), createdBefore: at(4) },
            [3],
            "everything at once",
          );
          await expectFilter({ conversationIds: [conv2], senderId: a, order: SearchOrder.RECENCY }, [3], "with recency order");
        });

        it("refuses a date range that ends before it starts", async () => {
          for (const [after, before] of [[at(3), at(2)], [at(2), at(2)]] as const) {
            await expectInvalidArgument(
              reader.search.searchMessages({ query: word, createdAfter: after, createdBefore: before }),
              "created_before",
              "created_after",
            );
          }
        });
      });

      describe("order", () => {
        let clients: Clients;
        const word = uniqueWord("ow");
        const m: Record<string, Message> = {};
        const names = new Names();

        before(async () => {
          const [a, b, c] = await newUsers(server, 3, "order");
          clients = server.clientsFor(a!, protocol);
          const conv = await createGroup(clients, [b!, c!]);
          const texts: [string, string][] = [
            ["best", `${word} ${word} ${word} ${word} ${word}`],
            ["weak", `${word} appears only once among a good many other perfectly ordinary words in this sentence`],
            ["tieOld", `${word} twice ${word}`],
            ["tieNew", `${word} twice ${word}`],
          ];
          for (const [key, text] of texts) {
            if (Object.keys(m).length > 0) await clockPast(Object.values(m).at(-1)!.createdAt);
            m[key] = await sendText(clients, conv.id, text);
          }
          names.add(...Object.values(m));
          await waitForHits(clients, { query: word }, Object.values(m), { names, what: "everything indexed" });
        });

        const expectOrder = (hits: SearchHit[], keys: string[], what: string) =>
          assert.deepEqual(hitIds(hits), keys.map((k) => m[k]!.id), `${what}: got ${names.of(hitIds(hits))}, expected ${names.of(keys.map((k) => m[k]!.id))}`);

        for (const order of [undefined, SearchOrder.UNSPECIFIED, SearchOrder.RELEVANCE]) {
          it(`puts the best match first, equally good ones newest first (order ${orderName(order)})`, async () => {
            const hits = await searchAll(clients, { query: word, order });
            expectOrder(hits, ["best", "tieNew", "tieOld", "weak"], "relevance order");
            const scores = hits.map((h) => h.score);
            for (let i = 1; i < scores.length; i++) assert.ok(scores[i]! <= scores[i - 1]!, `scores never increase: ${scores.join(", ")}`);
            assert.ok(scores[0]! > scores[3]!, `the best match scores higher than the weakest: ${scores.join(", ")}`);
            assert.equal(scores[1], scores[2], "identical messages score the same");
          });
        }

        it("orders by recency alone when asked, every hit still scored", async () => {
          const hits = await searchAll(clients, { query: word, order: SearchOrder.RECENCY });
          expectOrder(hits, ["tieNew", "tieOld", "weak", "best"], "recency order");
          for (const h of hits) assert.ok(h.score > 0, `score ${h.score} is positive in recency order too`);
        });

        it("refuses an unknown order", async () => {
          await expectInvalidArgument(clients.search.searchMessages({ query: word, order: 7 as SearchOrder }), "order");
        });
      });

      describe("pagination", () => {
        let clients: Clients;
        let conv: string;
        const word = uniqueWord("pw");
        const sent: Message[] = [];
        const names = new Names();

        before(async () => {
          const [a, b, c] = await newUsers(server, 3, "pages");
          clients = server.clientsFor(a!, protocol);
          conv = (await createGroup(clients, [b!, c!])).id;
          // Concurrent sends in small bursts: several messages may share a timestamp and a
          // score, and pages must still neither repeat nor skip any of them.
          for (let burst = 0; burst < 5; burst++) {
            sent.push(...(await Promise.all(Array.from({ length: 5 }, (_, i) => sendText(clients, conv, `${word} item ${burst * 5 + i}`)))));
          }
          names.add(...sent);
          await waitForHits(clients, { query: word }, sent, { names, what: "everything indexed" });
        });

        for (const order of [SearchOrder.RELEVANCE, SearchOrder.RECENCY]) {
          it(`walks every hit exactly once in ${orderName(order)} order, also while new matches arrive`, async () => {
            const whole = hitIds(await searchAll(clients, { query: word, order, pageSize: 100 }));
            assert.equal(whole.length, sent.length, "one page of 100 holds every hit");

            const walked: string[] = [];
            let pageToken = "";
            let pages = 0;
            const newcomers: Message[] = [];
            do {
              const res = await clients.search.searchMessages({ query: word, order, pageSize: 4, pageToken });
              assert.ok(res.hits.length <= 4, `a page holds at most page_size hits, got ${res.hits.length}`);
              walked.push(...hitIds(res.hits));
              pageToken = res.nextPageToken;
              if (++pages === 2) {
                // Newer matches, indexed before the walk goes on: they sort before the
                // position already reached, so they must not push earlier hits into later pages.
                const marker = uniqueWord("pn");
                // (Twice the word: a better match too, so they come first in either order.)
                newcomers.push(
                  await sendText(clients, conv, `${word} ${word} late ${marker}`),
                  await sendText(clients, conv, `${word} ${word} later ${marker}`),
                );
                await waitForHits(clients, { query: marker }, newcomers, { names, what: "the newcomers indexed" });
              }
            } while (pageToken && pages < 100);
            assert.equal(pageToken, "", "the walk ends");

            const duplicates = walked.filter((id, i) => walked.indexOf(id) !== i);
            assert.deepEqual(duplicates, [], `no hit appears twice: ${names.of(duplicates)}`);
            const missing = whole.filter((id) => !walked.includes(id));
            assert.deepEqual(missing, [], `no hit is skipped: ${names.of(missing)}`);
            const before = walked.filter((id) => whole.includes(id));
            assert.deepEqual(before, whole, "the walk keeps the order of a single page");
            // The newcomers match from now on: the other order's walk counts them in.
            sent.push(...newcomers);

          });
        }

        it("keeps recency order by created time across pages", async () => {
          const hits = await searchAll(clients, { query: word, order: SearchOrder.RECENCY, pageSize: 3 });
          const times = hits.map((h) => ms(h.message!.createdAt));
          for (let i = 1; i < times.length; i++) assert.ok(times[i]! <= times[i - 1]!, `newest first: ${times.join(", ")}`);
        });

        it("honours page_size and its default", async () => {
          const small = await clients.search.searchMessages({ query: word, pageSize: 1 });
          assert.equal(small.hits.length, 1);
          assert.notEqual(small.nextPageToken, "");
          const byDefault = await clients.search.searchMessages({ query: word });
          assert.ok(byDefault.hits.length <= 20, `the default page holds at most 20 hits, got ${byDefault.hits.length}`);
          assert.ok(byDefault.hits.length > 0);
          assert.notEqual(byDefault.nextPageToken, "", "more than 20 hits: a next page");
        });

        it("refuses a bad page_size", async () => {
          await expectInvalidArgument(clients.search.searchMessages({ query: word, pageSize: 101 }), "page_size");
          await expectInvalidArgument(clients.search.searchMessages({ query: word, pageSize: -1 }), "page_size");
        });

        it("refuses a page token that is not from this request", async () => {
          const first = await clients.search.searchMessages({ query: word, pageSize: 2 });
          assert.ok(first.nextPageToken);
          await expectInvalidArgument(clients.search.searchMessages({ query: word, pageSize: 2, pageToken: "garbage" }), "page_token");
          await expectInvalidArgument(
            clients.search.searchMessages({ query: `${word} item`, pageSize: 2, pageToken: first.nextPageToken }),
            "page_token",
          );
          await expectInvalidArgument(
            clients.search.searchMessages({ query: word, pageSize: 2, order: SearchOrder.RECENCY, pageToken: first.nextPageToken }),
            "page_token",
          );
          await expectInvalidArgument(
            clients.search.searchMessages({ query: word, pageSize: 2, conversationIds: [conv], pageToken: first.nextPageToken }),
            "page_token",
          );
          const tampered = first.nextPageToken.slice(0, -2) + (first.nextPageToken.endsWith("AA") ? "BB" : "AA");
          await expectInvalidArgument(clients.search.searchMessages({ query: word, pageSize: 2, pageToken: tampered }), "page_token");
        });
      });

      it("shows snippets as plain text: markup in a message is text, only the matches are highlighted", async () => {
        const [a, b, c] = await newUsers(server, 3, "snippet");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const word = uniqueWord("sw");
        const text = `use <b>${word}</b> & "quotes" with 1 < 2`;
        const sent = await sendText(A, conv.id, text);
        const [hit] = await waitForHits(A, { query: word }, [sent]);
        const snippet = snippetOf(hit!);
        assert.deepEqual(snippet.highlighted, [word]);
        assert.ok(text.includes(snippet.text.trim().replace(/^(\.\.\.|…)|(\.\.\.|…)$/g, "")), `the snippet "${snippet.text}" is an extract of the text, unescaped`);
        assert.ok(snippet.text.includes(`<b>${word}</b>`), `the markup is shown as written: "${snippet.text}"`);
      });

      it("keeps the snippet of a long message short and around the match", async () => {
        const [a, b, c] = await newUsers(server, 3, "longsnip");
        const A = server.clientsFor(a!, protocol);
        const conv = await createGroup(A, [b!, c!]);
        const word = uniqueWord("lw");
        const filler = (n: number, w: string) => Array.from({ length: n }, (_, i) => `${w}${i}`).join(" ");
        const text = `${filler(300, "before")} ${word} ${filler(300, "after")}`;
        const sent = await sendText(A, conv.id, text);
        const [hit] = await waitForHits(A, { query: word }, [sent]);
        const snippet = snippetOf(hit!);
        assert.deepEqual(snippet.highlighted, [word]);
        assert.ok(snippet.text.length < text.length / 4, `the snippet is an extract (${snippet.text.length} of ${text.length} characters)`);
        assert.deepEqual(hit!.message?.content, { case: "text", value: text }, "the hit still carries the whole message");
      });

      it("finds nothing for a user in no conversation", async () => {
        const [a, b, c, d] = await newUsers(server, 4, "lonely");
        const B = server.clientsFor(b!, protocol);
        const conv = await createGroup(B, [c!, d!]);
        const word = uniqueWord();
        const sent = await sendText(B, conv.id, `${word} for members only`);
        await waitForHits(B, { query: word }, [sent], { what: "indexed (a member finds it)" });
        const res = await server.clientsFor(a!, protocol).search.searchMessages({ query: word });
        assert.deepEqual(hitIds(res.hits), [], "a user in no conversation finds nothing");
        assert.equal(res.nextPageToken, "");
      });
    });
  }
});
