/**
 * The SDK's public-key work on WebCrypto against the forced tweetnacl path, back to back in
 * one process: Ed25519 sign and verify, the box shared key, a group message sealed and
 * opened, a DIRECT message sealed (to 3 devices) and opened, and the to-device side of a
 * sender-key rotation in a 500-member group — 499 claimed prekeys, each verified against its
 * device's signing key and sealed to, all at once as ToDeviceSender does.
 *
 *   npm run bench:crypto [-- --devices 499 --rounds 5]
 */
import { create } from "@bufbuild/protobuf";
import nacl from "tweetnacl";
import { PlainContentSchema, ToDevicePayloadSchema } from "../gen/parley/e2e/v1/payload_pb.ts";
import {
  boxSharedKey,
  createDeviceKeys,
  createPrekey,
  createSenderKey,
  openDirectBody,
  openDirectMessageKey,
  openGroup,
  primitivesBackend,
  readDirectCiphertext,
  readGroupCiphertext,
  receiverChainFrom,
  sealDirect,
  sealGroup,
  sealToDevice,
  setPrimitivesBackend,
  signDetached,
  verifyDetached,
  verifyPrekey,
  type PrekeyPair,
} from "../src/client/crypto/index.ts";
import { round } from "./lib/util.ts";

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at === -1 ? undefined : Number(process.argv[at + 1]);
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

const DEVICES = flag("devices", 499);
const ROUNDS = flag("rounds", 5);
const OPS = flag("ops", 300);

/** Median of per-call milliseconds over `count` sequential calls, after a warm-up. */
async function perCall(count: number, work: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(20, count); i++) await work(i);
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await work(i);
    samples.push(performance.now() - start);
  }
  return median(samples);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

// Fixtures, made once and shared by both paths so they time the same inputs.
const me = createDeviceKeys();
const peer = createDeviceKeys();
const message = nacl.randomBytes(200);
const signature = nacl.sign.detached(message, me.signing.secretKey);
const text = create(PlainContentSchema, { text: "a message of ordinary length, about as long as people write them" });
const members = Array.from({ length: DEVICES }, () => createDeviceKeys());
const prekeys: PrekeyPair[] = [];
setPrimitivesBackend("tweetnacl");
for (const [i, member] of members.entries()) prekeys.push(await createPrekey(i + 1, member.signing.secretKey));
setPrimitivesBackend("auto");
const distribution = create(ToDevicePayloadSchema, {
  kind: { case: "senderKey", value: { conversationId: "group-1", keyEpoch: 2, senderKeyId: "k", index: 0, chainKey: nacl.randomBytes(32) } },
});

interface Row {
  readonly name: string;
  readonly ms: number;
}

async function measure(): Promise<Row[]> {
  const rows: Row[] = [];
  rows.push({ name: "Ed25519 sign", ms: await perCall(OPS, () => signDetached(message, me.signing.secretKey)) });
  rows.push({ name: "Ed25519 verify", ms: await perCall(OPS, () => verifyDetached(message, signature, me.signing.publicKey)) });
  rows.push({ name: "box shared key (X25519+HSalsa20)", ms: await perCall(OPS, () => boxSharedKey(peer.box.publicKey, me.box.secretKey)) });

  const senderKey = createSenderKey();
  rows.push({
    name: "group seal + open",
    ms: await perCall(OPS, async () => {
      const sealed = await sealGroup({ content: text, conversationId: "group-1", keyEpoch: 2, senderDeviceId: "d1", signingSecretKey: me.signing.secretKey, senderKey });
      const ciphertext = readGroupCiphertext(sealed.envelope);
      await openGroup(sealed.envelope, ciphertext, "group-1", receiverChainFrom(senderKey.index, senderKey.chainKey), me.signing.publicKey);
    }),
  });
  const recipients = [me, peer, createDeviceKeys()].map((keys, i) => ({ deviceId: `d${i}`, boxPublicKey: keys.box.publicKey }));
  rows.push({
    name: "direct seal (3 key boxes) + open",
    ms: await perCall(OPS, async () => {
      const sealed = await sealDirect({ content: text, senderDeviceId: "d0", senderBoxSecretKey: me.box.secretKey, recipients, keyEpoch: 2 });
      const ciphertext = readDirectCiphertext(sealed.envelope);
      openDirectBody(sealed.envelope, ciphertext, await openDirectMessageKey(ciphertext, { deviceId: "d1", boxSecretKey: peer.box.secretKey }, me.box.publicKey));
    }),
  });

  const rotations: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const start = performance.now();
    await Promise.all(
      members.map(async (member, i) => {
        const prekey = prekeys[i]!;
        if (!(await verifyPrekey(prekey, member.signing.publicKey))) throw new Error("a prekey did not verify");
        await sealToDevice(distribution, me.box.secretKey, { boxPublicKey: member.box.publicKey, prekey });
      }),
    );
    rotations.push(performance.now() - start);
  }
  rows.push({ name: `rotation: ${DEVICES} prekeys verified + sealed (whole batch)`, ms: median(rotations) });
  return rows;
}

setPrimitivesBackend("auto");
const backend = await primitivesBackend();
const webcrypto = await measure();
setPrimitivesBackend("tweetnacl");
const fallback = await measure();
setPrimitivesBackend("auto");

console.log(`node ${process.version}, detected backend: ${backend}; medians (ms), ${OPS} calls per op, ${ROUNDS} rotation rounds`);
console.log(["operation".padEnd(52), "webcrypto".padStart(10), "tweetnacl".padStart(10), "speed-up".padStart(9)].join(" "));
for (const [i, row] of webcrypto.entries()) {
  const slow = fallback[i]!.ms;
  console.log([row.name.padEnd(52), String(round(row.ms, 3)).padStart(10), String(round(slow, 3)).padStart(10), `${round(slow / row.ms, 1)}x`.padStart(9)].join(" "));
}
