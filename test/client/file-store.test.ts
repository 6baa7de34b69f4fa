/** The Node FileStore: the ClientStore contract on a directory, with keys no file name could hold as is. */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { FileStore } from "../../src/client/node/file-store.ts";

describe("client FileStore", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "parley-filestore-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps values across instances (a restarted process sees what was written)", async () => {
    await new FileStore(dir).put("outbox/items/0001", new Uint8Array([1, 2, 3]));
    assert.deepEqual(await new FileStore(dir).get("outbox/items/0001"), new Uint8Array([1, 2, 3]));
  });

  it("lists a prefix in key order and nothing else", async () => {
    const s = new FileStore(dir);
    for (const k of ["b/2", "a/1", "b/1", "b/10", "c"]) await s.put(k, new TextEncoder().encode(k));
    assert.deepEqual((await s.list("b/")).map(([k]) => k), ["b/1", "b/10", "b/2"]);
  });

  it("overwrites atomically, deletes, and leaves no temporary files behind", async () => {
    const s = new FileStore(dir);
    await s.put("k", new Uint8Array([1]));
    await s.put("k", new Uint8Array([2]));
    assert.deepEqual(await s.get("k"), new Uint8Array([2]));
    await s.delete("k");
    await s.delete("k");
    assert.equal(await s.get("k"), undefined);
    assert.deepEqual(await readdir(dir), []);
  });

  it("stores keys with dots, slashes and other characters without escaping the directory", async () => {
    const s = new FileStore(path.join(dir, "home"));
    const keys = ["../escape", "..", ".", "a/../b", "é ü/*?", "sync/seq/01a2-b3"];
    for (const k of keys) await s.put(k, new TextEncoder().encode(k));
    for (const k of keys) assert.equal(new TextDecoder().decode((await s.get(k))!), k);
    assert.deepEqual((await readdir(dir)).sort(), ["home"], "nothing written outside the store's directory");
    assert.equal((await s.list("")).length, keys.length);
  });

  it("answers an empty list for a directory that does not exist yet", async () => {
    assert.deepEqual(await new FileStore(path.join(dir, "missing")).list(""), []);
  });
});
