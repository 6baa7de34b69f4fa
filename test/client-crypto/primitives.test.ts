/**
 * The signing and box primitives on WebCrypto and on tweetnacl: the same bytes either way, so
 * a device on one path reads a device on the other, and forgeries fail on both.
 */
import assert from "node:assert/strict";
import nacl from "tweetnacl";
import { create } from "@bufbuild/protobuf";
import { ToDevicePayloadSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import {
  boxSharedKey,
  createDeviceKeys,
  createSenderKey,
  openGroup,
  openToDevice,
  primitivesBackend,
  readGroupCiphertext,
  receiverChainFrom,
  sealGroup,
  sealToDevice,
  setPrimitivesBackend,
  signDetached,
  verifyDetached,
  type PrimitivesBackend,
} from "../../src/client/crypto/index.ts";
import { assertDecryptError, content, flipBit } from "./helpers.ts";

/** Runs work on the given path, then goes back to the detected one. */
async function on<T>(backend: PrimitivesBackend, work: () => Promise<T>): Promise<T> {
  setPrimitivesBackend(backend === "tweetnacl" ? "tweetnacl" : "auto");
  try {
    return await work();
  } finally {
    setPrimitivesBackend("auto");
  }
}

const BOTH: PrimitivesBackend[] = ["webcrypto", "tweetnacl"];

describe("crypto primitives", () => {
  after(() => setPrimitivesBackend("auto"));

  it("run on WebCrypto on this Node, and on tweetnacl when forced", async () => {
    assert.equal(await primitivesBackend(), "webcrypto");
    assert.equal(await on("tweetnacl", primitivesBackend), "tweetnacl");
  });

  it("give byte-identical signatures and shared keys on both paths", async () => {
    for (let i = 0; i < 20; i++) {
      const signing = nacl.sign.keyPair();
      const message = nacl.randomBytes(i * 37);
      const [web, fallback] = [await on("webcrypto", () => signDetached(message, signing.secretKey)), await on("tweetnacl", () => signDetached(message, signing.secretKey))];
      assert.deepEqual(web, fallback);
      assert.deepEqual(web, nacl.sign.detached(message, signing.secretKey));
      const mine = nacl.box.keyPair();
      const theirs = nacl.box.keyPair();
      const webKey = await on("webcrypto", () => boxSharedKey(theirs.publicKey, mine.secretKey));
      assert.deepEqual(webKey, await on("tweetnacl", () => boxSharedKey(theirs.publicKey, mine.secretKey)));
      assert.deepEqual(webKey, nacl.box.before(theirs.publicKey, mine.secretKey));
    }
  });

  it("computes the box key tweetnacl does for a low-order public key, which WebCrypto refuses", async () => {
    const mine = nacl.box.keyPair();
    const lowOrder = new Uint8Array(32);
    assert.deepEqual(await boxSharedKey(lowOrder, mine.secretKey), nacl.box.before(lowOrder, mine.secretKey));
  });

  for (const [signer, verifier] of [BOTH, [...BOTH].reverse()] as Array<[PrimitivesBackend, PrimitivesBackend]>) {
    it(`verifies on ${verifier} what ${signer} signed, and refuses it tampered`, async () => {
      const signing = nacl.sign.keyPair();
      const message = nacl.randomBytes(64);
      const signature = await on(signer, () => signDetached(message, signing.secretKey));
      await on(verifier, async () => {
        assert.equal(await verifyDetached(message, signature, signing.publicKey), true);
        assert.equal(await verifyDetached(message, flipBit(signature, 0), signing.publicKey), false);
        assert.equal(await verifyDetached(message, flipBit(signature, -1), signing.publicKey), false);
        assert.equal(await verifyDetached(flipBit(message, 3), signature, signing.publicKey), false);
        assert.equal(await verifyDetached(message, signature, nacl.sign.keyPair().publicKey), false);
        assert.equal(await verifyDetached(message, signature.slice(1), signing.publicKey), false);
        assert.equal(await verifyDetached(message, signature, new Uint8Array(32).fill(0xff)), false);
      });
    });

    it(`opens on ${verifier} a group message and a to-device payload sealed on ${signer}`, async () => {
      const sender = createDeviceKeys();
      const recipient = createDeviceKeys();
      const senderKey = createSenderKey();
      const [sealed, toDevice] = await on(signer, async () => [
        await sealGroup({ content: content("both ways"), conversationId: "g1", keyEpoch: 1, senderDeviceId: "d1", signingSecretKey: sender.signing.secretKey, senderKey }),
        await sealToDevice(create(ToDevicePayloadSchema, { kind: { case: "keyRequest", value: { conversationId: "g1" } } }), sender.box.secretKey, { boxPublicKey: recipient.box.publicKey }),
      ] as const);
      await on(verifier, async () => {
        const ciphertext = readGroupCiphertext(sealed.envelope);
        const chain = receiverChainFrom(senderKey.index, senderKey.chainKey);
        assert.equal((await openGroup(sealed.envelope, ciphertext, "g1", chain, sender.signing.publicKey)).content.text, "both ways");
        await assertDecryptError(() => openGroup(sealed.envelope, { ...ciphertext, signature: flipBit(ciphertext.signature, 9) }, "g1", chain, sender.signing.publicKey), "bad_signature");
        assert.equal((await openToDevice(toDevice, sender.box.publicKey, recipient.box.secretKey)).kind.case, "keyRequest");
      });
    });
  }
});
