/** Safety numbers: the same on both sides, different when any key or id differs. */
import assert from "node:assert/strict";
import { createDeviceKeys, safetyNumber } from "../../src/client/crypto/index.ts";

describe("safety numbers", () => {
  const alice = { userId: "alice", signingPublicKey: createDeviceKeys().signing.publicKey };
  const bob = { userId: "bob", signingPublicKey: createDeviceKeys().signing.publicKey };

  it("are 60 digits in 12 groups of 5", () => {
    assert.match(safetyNumber(alice, bob), /^\d{5}( \d{5}){11}$/);
  });

  it("are the same on both sides", () => {
    assert.equal(safetyNumber(alice, bob), safetyNumber(bob, alice));
  });

  it("change when either side's key is another one, or the user id is", () => {
    const number = safetyNumber(alice, bob);
    assert.notEqual(safetyNumber(alice, { ...bob, signingPublicKey: createDeviceKeys().signing.publicKey }), number);
    assert.notEqual(safetyNumber({ ...alice, signingPublicKey: createDeviceKeys().signing.publicKey }, bob), number);
    assert.notEqual(safetyNumber(alice, { ...bob, userId: "bobby" }), number);
  });
});
