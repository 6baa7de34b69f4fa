/** GROUP envelopes on sender-key chains: signatures, replays, out-of-order delivery, the window. */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GroupCiphertextSchema } from "../../gen/parley/e2e/v1/payload_pb.ts";
import type { EncryptedEnvelope } from "../../gen/parley/v1/message_pb.ts";
import {
  GROUP_ALGORITHM,
  MAX_SKIPPED_MESSAGE_KEYS,
  createDeviceKeys,
  createSenderKey,
  mergeEarlierDistribution,
  messageKeyOf,
  nextChainKey,
  chainKeyAt,
  openGroup,
  openGroupWithMessageKey,
  readGroupCiphertext,
  receiverChainFrom,
  sealGroup,
  takeMessageKey,
  type ReceiverChain,
  type SenderKey,
} from "../../src/client/crypto/index.ts";
import { concatBytes } from "../../src/client/crypto/bytes.ts";
import nacl from "tweetnacl";
import { assertDecryptError, content, flipBit } from "./helpers.ts";

const sender = createDeviceKeys();

/** Seals n messages in a row from a fresh sender key; returns them and the key as distributed. */
async function sealMany(count: number, conversationId = "g1", keyEpoch = 2): Promise<{ envelopes: EncryptedEnvelope[]; distributed: SenderKey }> {
  const distributed = createSenderKey();
  let senderKey = distributed;
  const envelopes: EncryptedEnvelope[] = [];
  for (let i = 0; i < count; i++) {
    const sealed = await sealGroup({ content: content(`message ${i}`), conversationId, keyEpoch, senderDeviceId: "alice-1", signingSecretKey: sender.signing.secretKey, senderKey });
    envelopes.push(sealed.envelope);
    senderKey = sealed.nextSenderKey;
  }
  return { envelopes, distributed };
}

/** A receiving device: opens envelopes and commits its chain as the key manager does. */
class Receiver {
  chain: ReceiverChain;
  constructor(distributed: SenderKey) {
    this.chain = receiverChainFrom(distributed.index, distributed.chainKey);
  }
  async open(envelope: EncryptedEnvelope, conversationId = "g1", signingPublicKey = sender.signing.publicKey): Promise<string> {
    const opened = await openGroup(envelope, readGroupCiphertext(envelope), conversationId, this.chain, signingPublicKey);
    this.chain = opened.nextChain;
    return opened.content.text;
  }
}

describe("sender-key chains", () => {
  it("derive MK_i and CK_{i+1} from nacl.hash with the 0x01 and 0x02 labels", async () => {
    const chainKey = nacl.randomBytes(32);
    assert.deepEqual(messageKeyOf(chainKey), nacl.hash(concatBytes(Uint8Array.of(1), chainKey)).slice(0, 32));
    assert.deepEqual(nextChainKey(chainKey), nacl.hash(concatBytes(Uint8Array.of(2), chainKey)).slice(0, 32));
  });
});

describe("group envelopes", () => {
  it("names the construction, the sender key and the epoch", async () => {
    const { envelopes, distributed } = await sealMany(1);
    const envelope = envelopes[0]!;
    assert.equal(envelope.algorithm, GROUP_ALGORITHM);
    assert.equal(envelope.keyId, distributed.id);
    assert.equal(envelope.keyEpoch, 2);
    assert.equal(readGroupCiphertext(envelope).senderDeviceId, "alice-1");
  });

  it("opens messages in order", async () => {
    const { envelopes, distributed } = await sealMany(3);
    const receiver = new Receiver(distributed);
    const opened: string[] = [];
    for (const envelope of envelopes) opened.push(await receiver.open(envelope));
    assert.deepEqual(opened, ["message 0", "message 1", "message 2"]);
  });

  it("opens messages out of order within the window", async () => {
    const { envelopes, distributed } = await sealMany(5);
    const receiver = new Receiver(distributed);
    const opened: string[] = [];
    for (const i of [4, 1, 3, 0, 2]) opened.push(await receiver.open(envelopes[i]!));
    assert.deepEqual(opened, ["message 4", "message 1", "message 3", "message 0", "message 2"]);
    assert.equal(receiver.chain.skipped.size, 0);
  });

  it("refuses a replay, whether the index was opened in order or from the skipped keys", async () => {
    const { envelopes, distributed } = await sealMany(3);
    const receiver = new Receiver(distributed);
    await receiver.open(envelopes[2]!);
    await receiver.open(envelopes[0]!);
    await assertDecryptError(() => receiver.open(envelopes[2]!), "replayed");
    await assertDecryptError(() => receiver.open(envelopes[0]!), "replayed");
    assert.equal(await receiver.open(envelopes[1]!), "message 1");
  });

  it("cannot open what was sent before the index the key was handed out at", async () => {
    const { envelopes, distributed } = await sealMany(3);
    const receiver = new Receiver({ ...distributed, index: 2, chainKey: nextChainKey(nextChainKey(distributed.chainKey)) });
    await assertDecryptError(() => receiver.open(envelopes[1]!), "unknown_key");
    assert.equal(await receiver.open(envelopes[2]!), "message 2");
  });

  it("says unknown_key for an index beyond the skipped-key window, and keeps the chain usable", async () => {
    const first = createSenderKey();
    const messageKeys: Uint8Array[] = [];
    for (let chainKey = first.chainKey; messageKeys.length < MAX_SKIPPED_MESSAGE_KEYS + 3; chainKey = nextChainKey(chainKey)) {
      messageKeys.push(messageKeyOf(chainKey));
    }
    const last = messageKeys.length - 1;
    let chain = receiverChainFrom(0, first.chainKey);
    await assertDecryptError(() => takeMessageKey(chain, last), "unknown_key");
    const atWindowEdge = takeMessageKey(chain, MAX_SKIPPED_MESSAGE_KEYS);
    assert.deepEqual(atWindowEdge.messageKey, messageKeys[MAX_SKIPPED_MESSAGE_KEYS]);
    chain = atWindowEdge.next;
    assert.equal(chain.skipped.size, MAX_SKIPPED_MESSAGE_KEYS);
    // The window is full: stepping further forward drops the oldest skipped keys for good.
    const further = takeMessageKey(chain, last);
    assert.deepEqual(further.messageKey, messageKeys[last]);
    chain = further.next;
    assert.equal(chain.skipped.size, MAX_SKIPPED_MESSAGE_KEYS);
    await assertDecryptError(() => takeMessageKey(chain, 0), "unknown_key");
    assert.deepEqual(takeMessageKey(chain, last - 1).messageKey, messageKeys[last - 1]);
  });

  it("refuses a flipped body, nonce or signature, and another device's signing key, without moving the chain", async () => {
    const { envelopes, distributed } = await sealMany(1);
    const envelope = envelopes[0]!;
    const receiver = new Receiver(distributed);
    const ciphertext = fromBinary(GroupCiphertextSchema, envelope.ciphertext);
    const reencode = (changes: Partial<typeof ciphertext>) => ({
      ...envelope,
      ciphertext: toBinary(GroupCiphertextSchema, create(GroupCiphertextSchema, { ...ciphertext, ...changes })),
    });
    await assertDecryptError(() => receiver.open(reencode({ body: flipBit(ciphertext.body, -1) })), "bad_signature");
    await assertDecryptError(() => receiver.open(reencode({ signature: flipBit(ciphertext.signature, 0) })), "bad_signature");
    await assertDecryptError(() => receiver.open(reencode({ index: 1 })), "bad_signature");
    await assertDecryptError(() => receiver.open({ ...envelope, nonce: flipBit(envelope.nonce, 0) }), "bad_signature");
    await assertDecryptError(() => receiver.open({ ...envelope, keyEpoch: 3 }), "bad_signature");
    await assertDecryptError(() => receiver.open(envelope, "g2"), "bad_signature");
    await assertDecryptError(() => receiver.open(envelope, "g1", createDeviceKeys().signing.publicKey), "bad_signature");
    assert.equal(await receiver.open(envelope), "message 0");
  });

  it("says tampered when a validly signed body does not open under the chain (a wrong key)", async () => {
    const { envelopes } = await sealMany(1);
    const receiver = new Receiver(createSenderKey());
    await assertDecryptError(() => receiver.open(envelopes[0]!), "tampered");
    assert.equal(receiver.chain.nextIndex, 0);
  });

  it("refuses an envelope whose key id is not its sender key, and garbage", async () => {
    const { envelopes, distributed } = await sealMany(1);
    const receiver = new Receiver(distributed);
    await assertDecryptError(() => receiver.open({ ...envelopes[0]!, keyId: "other" }), "tampered");
    await assertDecryptError(() => receiver.open({ ...envelopes[0]!, ciphertext: Uint8Array.of(0xff) }), "malformed");
  });

  it("folds in an earlier distribution of the same key, so the missing messages open once", async () => {
    const { envelopes, distributed } = await sealMany(4);
    const receiver = new Receiver({ ...distributed, index: 2, chainKey: nextChainKey(nextChainKey(distributed.chainKey)) });
    assert.equal(await receiver.open(envelopes[3]!), "message 3");
    receiver.chain = mergeEarlierDistribution(receiver.chain, distributed.index, distributed.chainKey);
    assert.equal(await receiver.open(envelopes[0]!), "message 0");
    assert.equal(await receiver.open(envelopes[2]!), "message 2");
    await assertDecryptError(() => receiver.open(envelopes[3]!), "replayed");
    await assertDecryptError(() => receiver.open(envelopes[0]!), "replayed");
  });
});

describe("group envelopes opened with a message key already taken", () => {
  it("open the same stored message again, still checking the signature", async () => {
    const { envelopes, distributed } = await sealMany(1);
    const envelope = envelopes[0]!;
    const ciphertext = readGroupCiphertext(envelope);
    const opened = await openGroup(envelope, ciphertext, "g1", receiverChainFrom(distributed.index, distributed.chainKey), sender.signing.publicKey);
    assert.equal((await openGroupWithMessageKey(envelope, ciphertext, "g1", opened.messageKey, sender.signing.publicKey)).text, "message 0");
    await assertDecryptError(() => openGroupWithMessageKey(envelope, ciphertext, "g1", opened.messageKey, createDeviceKeys().signing.publicKey), "bad_signature");
    await assertDecryptError(() => openGroupWithMessageKey(envelope, ciphertext, "g1", nacl.randomBytes(32), sender.signing.publicKey), "tampered");
  });

  it("let the sender reread its own message from the key's first link", async () => {
    const { envelopes, distributed } = await sealMany(3);
    const envelope = envelopes[2]!;
    const messageKey = messageKeyOf(chainKeyAt(distributed, 2));
    assert.equal((await openGroupWithMessageKey(envelope, readGroupCiphertext(envelope), "g1", messageKey, sender.signing.publicKey)).text, "message 2");
    await assertDecryptError(() => chainKeyAt({ ...distributed, index: 3 }, 2), "unknown_key");
  });
});
