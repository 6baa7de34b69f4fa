/** The PostgreSQL backend's page positions: every shape survives a round trip, nothing else is read. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { InvalidInputError } from "../../src/errors.ts";
import { decodeCursor, encodeCursor, type Cursor } from "../../src/search/postgres-cursor.ts";

describe("PostgreSQL search page positions", () => {
  const key = { createdMs: Date.UTC(2026, 5, 1), messageId: randomUUID() };
  const scored = { score: 0.0607927, ...key };

  it("round-trips relevance, recency and window positions", () => {
    const cursors: Cursor[] = [
      { kind: "scored", after: scored },
      { kind: "recent", after: key, inclusive: false },
      { kind: "recent", after: key, inclusive: true },
      { kind: "window", upper: null, range: null },
      { kind: "window", upper: key, range: null },
      { kind: "window", upper: null, range: { lower: key, after: scored } },
      { kind: "window", upper: key, range: { lower: null, after: scored } },
    ];
    for (const cursor of cursors) assert.deepEqual(decodeCursor(JSON.parse(JSON.stringify(encodeCursor(cursor)))), cursor);
  });

  it("refuses anything else: the earlier release's shape, unknown tags, bad times, ids and scores", () => {
    const id = key.messageId;
    const forged: (string | number)[][] = [
      [0.1, "1765000000000", id], // the earlier release's relevance position
      ["1765000000000", id], // and its recency one
      ["x", 1, id],
      ["s", 0.1, 1, "not-a-uuid"],
      ["s", "0.1", 1, id],
      ["t", 1.5, id],
      ["t", 253_402_300_800_000, id],
      ["w", "", id],
      ["w", 1, id, "", ""],
      ["w", "", "", 1, id, Number.NaN, 1, id],
      ["w", "", "", "", "", 0.1, 1, "'; drop table messages; --"],
    ];
    for (const after of forged) assert.throws(() => decodeCursor(after), InvalidInputError, JSON.stringify(after));
  });
});
