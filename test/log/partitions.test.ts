/**
 * Which partition an event goes to (contract: FNV-1a 32-bit over the key's UTF-8 bytes, modulo
 * the partition count) and the EVENT_PARTITIONS setting's range. Pure logic: runs in both modes.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import { partitionOf } from "../../src/log/partitions.ts";

/** FNV-1a 32-bit, written from the published algorithm (offset basis 2166136261, prime 16777619). */
function fnv1a32(key: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(key, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

describe("partitionOf", () => {
  it("is FNV-1a 32-bit of the key's UTF-8 bytes (published test vectors)", () => {
    // Reference values of FNV-1a 32 (Fowler/Noll/Vo test suite): "" → 0x811c9dc5, "a" → 0xe40c292c,
    // "foobar" → 0xbf9cf968. With 1024 partitions the low 10 bits remain; checking the reference
    // implementation against them first keeps this test honest.
    assert.equal(fnv1a32(""), 0x811c9dc5);
    assert.equal(fnv1a32("a"), 0xe40c292c);
    assert.equal(fnv1a32("foobar"), 0xbf9cf968);
    for (const key of ["", "a", "foobar"]) {
      for (const n of [1, 2, 7, 16, 1000, 1024]) {
        assert.equal(partitionOf(key, n), fnv1a32(key) % n, `partitionOf(${JSON.stringify(key)}, ${n})`);
      }
    }
  });

  it("maps conversation ids (lower-case uuid text) and user ids as the contract says, for every partition count", () => {
    const keys = [
      ...Array.from({ length: 200 }, () => randomUUID()),
      "alice-3f9a0c1d",
      "Zoë-émigré", // non-ASCII: hashed as UTF-8 bytes, not UTF-16 code units
      "用户-1",
    ];
    for (const key of keys) {
      for (const n of [1, 3, 16, 64, 1024]) {
        const p = partitionOf(key, n);
        assert.equal(p, fnv1a32(key) % n, `partitionOf(${JSON.stringify(key)}, ${n})`);
        assert.ok(Number.isInteger(p) && p >= 0 && p < n, `partition ${p} is in [0, ${n})`);
      }
    }
  });

  it("spreads conversation ids over all 16 default partitions", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2_000 && seen.size < 16; i++) seen.add(partitionOf(randomUUID(), 16));
    assert.equal(seen.size, 16, `2,000 random conversation ids hit every partition; hit ${[...seen].sort((a, b) => a - b).join(",")}`);
  });
});

describe("EVENT_PARTITIONS", () => {
  const base = { JWT_SECRET: "x".repeat(32), PGLITE_PATH: "memory://" };
  for (const bad of ["0", "1025", "-1", "1.5", "sixteen", "16x"]) {
    it(`refuses EVENT_PARTITIONS=${JSON.stringify(bad)} with an error naming the setting`, () => {
      assert.throws(() => loadConfig({ ...base, EVENT_PARTITIONS: bad }), /EVENT_PARTITIONS/);
    });
  }
  for (const good of ["1", "16", "1024"]) {
    it(`accepts EVENT_PARTITIONS=${good}`, () => {
      assert.doesNotThrow(() => loadConfig({ ...base, EVENT_PARTITIONS: good }));
    });
  }
});
