/** HMAC-SHA-512 on nacl.hash, checked against RFC 4231 and node:crypto (here only, never in the SDK). */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import nacl from "tweetnacl";
import { fromHex, hmacSha512, toHex } from "../../src/client/crypto/index.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

describe("HMAC-SHA-512", () => {
  it("matches RFC 4231 test case 2", () => {
    const expected =
      "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554" +
      "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
    assert.equal(toHex(hmacSha512(utf8("Jefe"), utf8("what do ya want for nothing?"))), expected);
  });

  it("matches RFC 4231 test case 6 (a key longer than the block is hashed first)", () => {
    const expected =
      "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352" +
      "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598";
    const key = new Uint8Array(131).fill(0xaa);
    assert.equal(toHex(hmacSha512(key, utf8("Test Using Larger Than Block-Size Key - Hash Key First"))), expected);
  });

  it("agrees with node:crypto for keys shorter than, equal to and longer than the block", () => {
    for (const keyLength of [0, 16, 32, 127, 128, 129, 300]) {
      const key = nacl.randomBytes(keyLength);
      const message = nacl.randomBytes(keyLength + 7);
      assert.deepEqual(hmacSha512(key, message), new Uint8Array(createHmac("sha512", key).update(message).digest()), `key of ${keyLength} bytes`);
    }
  });

  it("round-trips hex the SDK stores ids and keys as", () => {
    const bytes = nacl.randomBytes(33);
    assert.deepEqual(fromHex(toHex(bytes)), bytes);
    assert.throws(() => fromHex("abc"));
    assert.throws(() => fromHex("zz"));
  });
});
