/** The query parser: what is syntax (quotes, a leading minus), and what is only ever text. */
import assert from "node:assert/strict";
import { InvalidInputError } from "../../src/errors.ts";
import { MAX_QUERY_CHARS, MAX_QUERY_TERMS, parseQuery } from "../../src/search/query-parser.ts";

function words(query: string) {
  const parsed = parseQuery(query);
  return { include: parsed.include.map((t) => t.words.join(" ")), exclude: parsed.exclude.map((t) => t.words.join(" ")) };
}

function rejects(query: string, pattern: RegExp) {
  assert.throws(() => parseQuery(query), (error: unknown) => error instanceof InvalidInputError && error.violations[0]!.field === "query" && pattern.test(error.message));
}

describe("search query parser", () => {
  it("splits plain words, lowercased and with Latin accents folded", () => {
    assert.deepEqual(words("  Café  MÜNCHEN straße "), { include: ["cafe", "munchen", "strasse"], exclude: [] });
  });

  it("keeps quoted words together as one phrase, and lets an unclosed quote run to the end", () => {
    assert.deepEqual(words('tent "who brings" the "last one'), { include: ["tent", "who brings", "the", "last one"], exclude: [] });
  });

  it("treats a leading minus as exclusion, of a word or of a phrase, and a minus inside a word as a separator", () => {
    assert.deepEqual(words('pizza -pineapple -"deep dish" e-mail'), { include: ["pizza", "e mail"], exclude: ["pineapple", "deep dish"] });
  });

  it("makes operators of other query languages plain separators", () => {
    assert.deepEqual(words("a&b | !c <-> d:* (e) f' OR 1=1; --"), { include: ["a b", "c", "d", "e", "f", "or", "1 1"], exclude: [] });
    assert.deepEqual(words('{"query":{"match_all":{}}} body:x* AND y~2'), { include: ["query", "match all", "body x", "and", "y 2"], exclude: [] });
  });

  it("keeps scripts other than Latin as they are (lowercased)", () => {
    assert.deepEqual(words("Привет 東京 ΑΘΗΝΑ"), { include: ["привет", "東京", "αθηνα"], exclude: [] });
  });

  it("rejects a query with nothing to look for", () => {
    for (const query of ["", "   ", "!!! ??? ---", "-alone", '-"only this"', "🎉🎉"]) rejects(query, /at least one word/);
  });

  it("rejects queries over the length and term limits", () => {
    rejects("a".repeat(MAX_QUERY_CHARS + 1), /longer than/);
    rejects("x ".repeat(5 * 1024), /longer than/);
    rejects(Array.from({ length: MAX_QUERY_TERMS + 1 }, (_, i) => `w${i}`).join(" "), /more than/);
    assert.equal(parseQuery("é".repeat(MAX_QUERY_CHARS)).include.length, 1);
  });
});
