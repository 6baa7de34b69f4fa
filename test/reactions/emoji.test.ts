import assert from "node:assert/strict";
import { InvalidInputError } from "../../src/errors.ts";
import { requireEmoji } from "../../src/reactions/emoji.ts";

describe("requireEmoji", () => {
  for (const [what, emoji] of [
    ["a plain emoji", "👍"],
    ["an emoji with a variation selector", "❤️"],
    ["a skin-tone modifier sequence", "👍🏽"],
    ["a ZWJ family", "👨‍👩‍👧‍👦"],
    ["a ZWJ flag", "🏳️‍🌈"],
    ["a regional-indicator flag", "🇫🇷"],
    ["a subdivision flag (tag sequence)", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"],
    ["a keycap", "1️⃣"],
  ] as const) {
    it(`accepts ${what}`, () => assert.equal(requireEmoji("emoji", emoji), emoji));
  }

  for (const [what, value] of [
    ["an empty string", ""],
    ["a letter", "a"],
    ["a digit without a keycap", "1"],
    ["two emoji", "👍👍"],
    ["an emoji with text", "👍a"],
    ["a bare ZWJ", "\u200d"],
    ["a grapheme longer than 32 bytes", "👍" + "\u0301".repeat(15)],
  ] as const) {
    it(`rejects ${what}`, () => {
      assert.throws(() => requireEmoji("emoji", value), (e: unknown) => e instanceof InvalidInputError && e.violations[0]!.field === "emoji");
    });
  }
});
