/** Blind-index tokens: deterministic per key, unrelated across keys, whole normalised words only. */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { blindToken, blindTokens, createSearchKey, hmacSha512, preferredSearchKey, searchWords, toHex } from "../../src/client/crypto/index.ts";

const hex = (tokens: Uint8Array[]) => tokens.map(toHex);

describe("blind-index search words", () => {
  it("folds case, accents and compatibility forms", async () => {
    assert.deepEqual(searchWords("Café CAFE café ＣＡＦＥ"), ["cafe"]);
    assert.deepEqual(searchWords("Ünïcödé Straße"), ["unicode", "straße"]);
  });

  it("splits on punctuation and whitespace, keeps letters and digits of any script", async () => {
    assert.deepEqual(searchWords("hello,world! it's 2026 — привет/мир"), ["hello", "world", "it", "s", "2026", "привет", "мир"]);
    assert.deepEqual(searchWords("  ...  "), []);
  });

  it("deduplicates and caps the words", async () => {
    assert.deepEqual(searchWords("a b a c b"), ["a", "b", "c"]);
    const many = Array.from({ length: 300 }, (_, i) => `w${i}`).join(" ");
    assert.equal(searchWords(many).length, 256);
    assert.equal(blindTokens(createSearchKey(), many).length, 256);
  });
});

describe("blind-index tokens", () => {
  const key = createSearchKey();

  it("are the first 16 bytes of HMAC-SHA-512(key, \"w:\" ‖ word)", () => {
    const token = blindToken(key, "cafe");
    assert.equal(token.length, 16);
    assert.deepEqual(token, hmacSha512(key, new TextEncoder().encode("w:cafe")).slice(0, 16));
  });

  it("give the same token for the same word under one key, however it was written", async () => {
    assert.deepEqual(hex(blindTokens(key, "Meet at the CAFÉ")), hex(blindTokens(key, "meet at the cafe")));
    assert.deepEqual(hex(blindTokens(key, "café!")), [toHex(blindToken(key, "cafe"))]);
  });

  it("give unrelated tokens under another key", async () => {
    const other = createSearchKey();
    assert.notEqual(toHex(blindToken(key, "cafe")), toHex(blindToken(other, "cafe")));
  });

  it("cover whole words only: a prefix has its own unrelated token", async () => {
    const tokens = hex(blindTokens(key, "encryption"));
    assert.equal(tokens.length, 1);
    for (const prefix of ["e", "enc", "encrypt", "encryptio"]) assert.ok(!tokens.includes(toHex(blindToken(key, prefix))), prefix);
  });
});

describe("preferred search key", () => {
  it("is the key whose SHA-512 sorts lowest, whatever order the keys come in", async () => {
    const keys = Array.from({ length: 5 }, () => createSearchKey());
    const lowest = [...keys].sort((a, b) => (toHex(nacl.hash(a)) < toHex(nacl.hash(b)) ? -1 : 1))[0];
    assert.deepEqual(preferredSearchKey(keys), lowest);
    assert.deepEqual(preferredSearchKey([...keys].reverse()), lowest);
    assert.equal(preferredSearchKey([]), undefined);
  });
});
