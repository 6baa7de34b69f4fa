/** Snippets: which runs are highlighted, and which part of a long message is shown. */
import assert from "node:assert/strict";
import { SNIPPET_CHARS, snippet } from "../../src/search/highlighter.ts";
import { parseQuery } from "../../src/search/query-parser.ts";

function marked(text: string, query: string): string {
  return snippet(text, parseQuery(query))
    .map((run) => (run.highlighted ? `[${run.text}]` : run.text))
    .join("");
}

describe("search snippets", () => {
  it("highlights every occurrence of each word, whatever its case or accents", () => {
    assert.equal(marked("The Café opens; CAFE and cafe-bar.", "café"), "The [Café] opens; [CAFE] and [cafe]-bar.");
  });

  it("highlights a phrase only where its words are adjacent, as one run", () => {
    assert.equal(marked("who brings the tent? brings who", '"who brings"'), "[who brings] the tent? brings who");
  });

  it("never highlights excluded terms", () => {
    assert.equal(marked("pizza without pineapple", "pizza -pineapple"), "[pizza] without pineapple");
  });

  it("shows a window around the first match of a long message, cut at word edges", () => {
    const text = `${"filler ".repeat(100)}needle ${"tail ".repeat(100)}`;
    const runs = snippet(text, parseQuery("needle"));
    const joined = runs.map((r) => r.text).join("");
    assert.ok(joined.length <= SNIPPET_CHARS, `snippet is ${joined.length} long`);
    assert.ok(text.includes(joined));
    assert.match(joined, /^filler .* needle tail .*tail$/);
    assert.deepEqual(runs.filter((r) => r.highlighted).map((r) => r.text), ["needle"]);
  });

  it("keeps surrogate pairs whole", () => {
    const text = `😀 ${"x".repeat(10)} 😀 needle 😀`;
    assert.equal(marked(text, "needle"), `😀 ${"x".repeat(10)} 😀 [needle] 😀`);
  });
});
