/**
 * Odd and hostile queries (issue 7): quotes, operators of every query language nearby
 * (tsquery, Lucene, SQL, regex, JSON), unicode, empty and huge input. Each gives sane results
 * (hits of the caller's own messages only) or INVALID_ARGUMENT naming the query — never
 * INTERNAL or UNKNOWN — and none of them changes what a normal search finds afterwards.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { expectHits, hitIds, Names, saneOutcome, uniqueWord, waitForHits } from "./helpers.ts";

describe("SearchMessages: odd and hostile queries", () => {
  let server: TestServer;
  before(async () => {
    server = await sharedRealtimeServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      let clients: Clients;
      let conversationId: string;
      const tag = uniqueWord("it");
      const m: Record<string, Message> = {};
      const names = new Names();

      before(async () => {
        const [a, b, c] = await newUsers(server, 3, "hostile");
        clients = server.clientsFor(a!, protocol);
        conversationId = (await createGroup(clients, [b!, c!])).id;
        const texts: Record<string, string> = {
          apostrophes: `it's O'Reilly's book ${tag}`,
          operators: `x & y | z ! w ${tag}`,
          cjk: `東京タワー と 富士山 ${tag}`,
          emoji: `party time 🎉🎉 ${tag}`,
          sql: `SELECT * FROM messages; DROP TABLE users; ${tag}`,
          hyphens: `foo-bar e-mail ${tag}`,
        };
        for (const [key, text] of Object.entries(texts)) m[key] = await sendText(clients, conversationId, text);
        names.add(...Object.values(m));
        await waitForHits(clients, { query: tag }, Object.values(m), { names, what: "everything indexed" });
      });

      /** Runs the query: hits or INVALID_ARGUMENT, and hits are only the caller's own messages. */
      async function sane(query: string): Promise<string[] | null> {
        const res = await saneOutcome(clients.search.searchMessages({ query, pageSize: 100 }), `query ${JSON.stringify(query.slice(0, 80))}`);
        if (!res) return null;
        const mine = new Set(Object.values(m).map((x) => x.id));
        const foreign = hitIds(res.hits).filter((id) => !mine.has(id));
        assert.deepEqual(foreign, [], `query ${JSON.stringify(query)} returned messages the caller never sent`);
        for (const h of res.hits) assert.equal(h.conversationId, conversationId);
        return hitIds(res.hits);
      }

      const hostile = (t: string) => [
        // Quotes, balanced or not.
        `"`, `""`, `"""`, `"${t}`, `${t}"`, `"${t} "x`, `'`, `''`, `'${t}'`, `-"`, `"-${t}"`, `" "`,
        // tsquery operators and syntax.
        `&`, `|`, `!`, `:`, `*`, `<->`, `<2>`, `(`, `)`, `\\`, `${t}:*`, `${t}:A`, `${t} & !x`, `!${t}`,
        `${t} <-> x`, `(${t}`, `${t})`, `((${t}) | x)`, `${t}\\`, `\\${t}`, `${t} <-`, `!!`, `&&&`, `-`, `--`, `- ${t}`,
        `--${t}`, `-${t}`, `-${t} -x`,
        // Lucene / OpenSearch query-string syntax.
        `${t}~2`, `${t}^10`, `title:${t}`, `*:*`, `${t} AND NOT x`, `${t} OR x`, `/.*/`, `[a TO z]`, `{"match_all":{}}`, `${t}?`,
        // SQL fragments.
        `' OR 1=1 --`, `'; DROP TABLE messages; --`, `${t}'); delete from message_search; --`, `$$ ${t} $$`, `%${t}%`, `_`, `${t}; select pg_sleep(5)`,
        // Unicode: accents (composed and not), CJK, emoji, right-to-left, invisible, control, lone surrogate.
        `café`, `cafe\u0301`, `東京タワー`, `富士山`, `🎉`, `${t} 🎉`, `مرحبا`, `\u200b`, `${t}\u200b`, `\u0000${t}`, `${t}\u0007`, `\ud800`, `\u{10ffff}`,
      ];

      it("answers every hostile query sanely", async () => {
        const outcomes: string[] = [];
        for (const query of hostile(tag)) {
          const ids = await sane(query);
          outcomes.push(`${JSON.stringify(query)} → ${ids === null ? "INVALID_ARGUMENT" : names.of(ids)}`);
        }
        // Nothing above changed the index or the data: everything is still found.
        await expectHits(clients, { query: tag }, Object.values(m), `after the hostile queries (they gave: ${outcomes.join("; ")})`, names);
      });

      it("treats operator characters as separators, never as operators", async () => {
        await expectHits(clients, { query: `x & y | z ! w` }, [m.operators!], "tsquery operators between words", names);
        await expectHits(clients, { query: `x&y|z!w` }, [m.operators!], "operators without spaces", names);
        await expectHits(clients, { query: `O'Reilly's` }, [m.apostrophes!], "apostrophes", names);
        await expectHits(clients, { query: `foo-bar` }, [m.hyphens!], "a hyphenated word", names);
        await expectHits(clients, { query: `e-mail ${tag}` }, [m.hyphens!], "another hyphenated word", names);
        await expectHits(clients, { query: `bar-foo` }, [], "a hyphenated word the other way round", names);
        await expectHits(clients, { query: `SELECT * FROM messages` }, [m.sql!], "an SQL statement is words", names);
        await expectHits(clients, { query: `${tag}:*` }, Object.values(m), "a prefix operator is not one", names);
        await expectHits(clients, { query: `"${tag} & | !"` }, Object.values(m), "operators inside quotes are separators too", names);
      });

      it("finds CJK and emoji-adjacent words", async () => {
        await expectHits(clients, { query: `東京タワー` }, [m.cjk!], "a run of CJK letters is a word", names);
        await expectHits(clients, { query: `富士山 ${tag}` }, [m.cjk!], "another CJK word", names);
        await expectHits(clients, { query: `party 🎉` }, [m.emoji!], "a word next to an emoji", names);
      });

      it("answers odd timestamps sanely: far past, far future, out of range", async () => {
        const odd = [
          { seconds: -62135596800n, nanos: 0 }, // 0001-01-01T00:00:00Z, the first valid time
          { seconds: 253402300799n, nanos: 999_999_999 }, // 9999-12-31T23:59:59.999999999Z, the last
          { seconds: 0n, nanos: 0 },
          { seconds: -62135596801n, nanos: 0 }, // out of the valid range
          { seconds: 10n ** 15n, nanos: 0 },
          { seconds: 1n, nanos: -1 },
          { seconds: 1n, nanos: 1_000_000_000 },
        ].map((t) => create(TimestampSchema, t));
        for (const t of odd) {
          for (const field of ["createdAfter", "createdBefore"] as const) {
            await saneOutcome(clients.search.searchMessages({ query: tag, [field]: t }), `${field} ${t.seconds}s ${t.nanos}ns`);
          }
        }
        await expectHits(clients, { query: tag, createdAfter: odd[0]!, createdBefore: odd[1]! }, Object.values(m), "the whole valid range", names);
      });

      it("refuses a blank query, or one with nothing to look for, naming the query", async () => {
        for (const query of ["", " ", "   \t\n  ", "\u3000", "!!!", "-foo", `-"${tag}"`, `"" ''`]) {
          await expectInvalidArgument(clients.search.searchMessages({ query }), "query");
        }
      });

      it("refuses a 10 KB query, and one over 512 characters or 16 terms, naming the query", async () => {
        await expectInvalidArgument(clients.search.searchMessages({ query: `${tag} `.repeat(Math.ceil(10_240 / (tag.length + 1))) }), "query");
        await expectInvalidArgument(clients.search.searchMessages({ query: "x".repeat(10_240) }), "query");
        await expectInvalidArgument(clients.search.searchMessages({ query: "y".repeat(513) }), "query");
        const seventeen = Array.from({ length: 17 }, (_, i) => `w${i}`).join(" ");
        await expectInvalidArgument(clients.search.searchMessages({ query: seventeen }), "query");
      });

      it("accepts queries right at the limits, counting characters, not bytes", async () => {
        const sixteen = [tag, ...Array.from({ length: 15 }, (_, i) => `-absent${i}`)].join(" ");
        await expectHits(clients, { query: sixteen }, Object.values(m), "16 terms", names);
        const longWord = `${tag} ${"z".repeat(512 - tag.length - 1)}`;
        assert.equal([...longWord].length, 512);
        await expectHits(clients, { query: longWord }, [], "512 characters", names);
        // 400 characters, 1,200 bytes of UTF-8.
        await expectHits(clients, { query: "東".repeat(400) }, [], "400 CJK characters", names);
      });
    });
  }
});
