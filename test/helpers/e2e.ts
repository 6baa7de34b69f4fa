/**
 * What the end-to-end encryption tests share: a KeyService client per user and protocol,
 * device and prekey keys made with tweetnacl the way a client makes them (the server only
 * ever sees public keys and signatures), encrypted conversations, sealed envelopes and
 * blind-index tokens. Nothing here knows how the server is built: it is the contract's view.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import nacl from "tweetnacl";
import { createClient, ConnectError, type Client, type Interceptor } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { KeyService } from "../../gen/parley/v1/key_service_pb.ts";
import type { Device, Prekey, ToDeviceMessage } from "../../gen/parley/v1/device_pb.ts";
import { ConversationType, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { EncryptedEnvelope, Message } from "../../gen/parley/v1/message_pb.ts";
import type { Clients, Protocol, RemoteServer } from "./test-server.ts";

/** The generated clients of every service, KeyService included. */
export interface E2eClients extends Clients {
  keys: Client<typeof KeyService>;
}

/** Clients that call as the user, over the protocol, with a KeyService client beside the others. */
export function e2eClientsFor(server: RemoteServer, userId: string, protocol: Protocol = "connect"): E2eClients {
  let token: Promise<string> | undefined;
  const bearer: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${await (token ??= server.tokenFor(userId))}`);
    return next(req);
  };
  return { ...server.clientsFor(userId, protocol), keys: createClient(KeyService, server.transport(protocol, [bearer])) };
}

/** The fields of a Prekey as a request carries it. */
export type PrekeyInit = Omit<Prekey, "$typeName" | "$unknown">;
/** The fields of an EncryptedEnvelope as a request carries it. */
export type EnvelopeInit = Omit<EncryptedEnvelope, "$typeName" | "$unknown">;

/** A device's key pairs as the device itself holds them. */
export interface DeviceKeys {
  readonly signing: nacl.SignKeyPair;
  readonly box: nacl.BoxKeyPair;
  /** Ed25519 detached signature of box.publicKey by signing.secretKey. */
  readonly boxKeySignature: Uint8Array;
  /** The prekeys this device made, by key id, with their secret halves. */
  readonly prekeySecrets: Map<number, Uint8Array>;
  /** The next prekey id (a monotonic counter, as the client keeps one). */
  nextPrekeyId: number;
}

export function newDeviceKeys(): DeviceKeys {
  const signing = nacl.sign.keyPair();
  const box = nacl.box.keyPair();
  return {
    signing,
    box,
    boxKeySignature: nacl.sign.detached(box.publicKey, signing.secretKey),
    prekeySecrets: new Map(),
    nextPrekeyId: 1,
  };
}

/** `count` fresh one-time prekeys signed by the device, with ids from its counter. */
export function makePrekeys(device: DeviceKeys, count: number): PrekeyInit[] {
  const out: PrekeyInit[] = [];
  for (let i = 0; i < count; i++) {
    const pair = nacl.box.keyPair();
    const keyId = device.nextPrekeyId++;
    device.prekeySecrets.set(keyId, pair.secretKey);
    out.push({ keyId, publicKey: pair.publicKey, signature: nacl.sign.detached(pair.publicKey, device.signing.secretKey) });
  }
  return out;
}

/** The RegisterDevice request for the device, valid as it stands. */
export function registration(device: DeviceKeys, displayName = "test device", prekeys: PrekeyInit[] = []) {
  return {
    signingPublicKey: device.signing.publicKey,
    boxPublicKey: device.box.publicKey,
    boxKeySignature: device.boxKeySignature,
    displayName,
    prekeys,
  };
}

/** A device registered for a user: its keys, as the device holds them, and the directory's entry. */
export interface RegisteredDevice {
  readonly keys: DeviceKeys;
  readonly device: Device;
  readonly id: string;
}

/** Registers a fresh device of the caller with `prekeyCount` prekeys. */
export async function registerDevice(clients: Pick<E2eClients, "keys">, prekeyCount = 0, displayName = "test device"): Promise<RegisteredDevice> {
  const keys = newDeviceKeys();
  const res = await clients.keys.registerDevice(registration(keys, displayName, makePrekeys(keys, prekeyCount)));
  if (!res.device) throw new Error("RegisterDevice returned no device");
  return { keys, device: res.device, id: res.device.deviceId };
}

/** The caller's view of one device in the directory, or undefined when it is not listed. */
export async function listedDevice(clients: Pick<E2eClients, "keys">, userId: string, deviceId: string): Promise<Device | undefined> {
  const res = await clients.keys.listDevices({ userIds: [userId] });
  return res.devices.find((d) => d.deviceId === deviceId);
}

/** How many unclaimed prekeys the owner sees on their device (fails when it is not listed). */
export async function unclaimedPrekeys(owner: Pick<E2eClients, "keys">, ownerId: string, deviceId: string): Promise<number> {
  const d = await listedDevice(owner, ownerId, deviceId);
  assert.ok(d, `device ${deviceId} of ${ownerId} is listed`);
  return d.unclaimedPrekeys;
}

/** Every message waiting in the device's inbox, following next_page_token. */
export async function inboxOf(clients: Pick<E2eClients, "keys">, deviceId: string, pageSize = 100): Promise<ToDeviceMessage[]> {
  const all: ToDeviceMessage[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1000; pages++) {
    const res = await clients.keys.listToDeviceMessages({ deviceId, pageSize, pageToken });
    all.push(...res.messages);
    if (!res.nextPageToken) return all;
    pageToken = res.nextPageToken;
  }
  throw new Error("ListToDeviceMessages never stopped returning a next_page_token");
}

/**
 * Creates an encrypted conversation as the caller (DIRECT with one peer, GROUP with several);
 * fails unless the server made it encrypted (and blind-searchable when asked).
 */
export async function createEncrypted(
  clients: Pick<Clients, "conversations">,
  type: ConversationType,
  memberIds: readonly string[],
  options: { blindSearch?: boolean; name?: string } = {},
): Promise<Conversation> {
  const res = await clients.conversations.createConversation({
    type,
    memberIds: [...memberIds],
    name: type === ConversationType.GROUP ? (options.name ?? "sealed group") : "",
    encrypted: true,
    blindSearch: options.blindSearch ?? false,
  });
  if (!res.conversation) throw new Error("CreateConversation returned no conversation");
  // A precondition of every test built on it: without it they would test a plain conversation.
  assert.equal(res.conversation.encrypted, true, "CreateConversation(encrypted) made an encrypted conversation");
  assert.equal(res.conversation.blindSearch, options.blindSearch ?? false, "CreateConversation kept blind_search as asked");
  return res.conversation;
}

/** The conversation's current key epoch, as the caller reads it. */
export async function keyEpochOf(clients: Pick<Clients, "conversations">, conversationId: string): Promise<number> {
  const res = await clients.conversations.getConversation({ conversationId });
  if (!res.conversation) throw new Error("GetConversation returned no conversation");
  return res.conversation.keyEpoch;
}

/**
 * An envelope as a client makes one: a secretbox of the text under a random key, at the
 * epoch. The ciphertext starts with every byte value so any re-encoding would show.
 */
export function sealedEnvelope(keyEpoch: number, text = `secret ${randomUUID()}`): EnvelopeInit {
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  const body = nacl.secretbox(new TextEncoder().encode(text), nonce, nacl.randomBytes(nacl.secretbox.keyLength));
  const allBytes = new Uint8Array(256);
  for (let i = 0; i < 256; i++) allBytes[i] = i;
  const ciphertext = new Uint8Array(allBytes.length + body.length);
  ciphertext.set(allBytes);
  ciphertext.set(body, allBytes.length);
  return { ciphertext, nonce, algorithm: "parley-sender-key-v1", keyId: `sk-${randomUUID()}`, keyEpoch };
}

/** Sends an envelope (with blind tokens, if any); returns the stored message. */
export async function sendEnvelope(
  clients: Pick<Clients, "messages">,
  conversationId: string,
  envelope: EnvelopeInit,
  options: { searchTokens?: Uint8Array[]; clientMessageId?: string } = {},
): Promise<Message> {
  const res = await clients.messages.sendMessage({
    conversationId,
    clientMessageId: options.clientMessageId ?? randomUUID(),
    content: { case: "envelope", value: envelope },
    searchTokens: options.searchTokens ?? [],
  });
  if (!res.message) throw new Error("SendMessage returned no message");
  return res.message;
}

/** A blind-index token as the client derives one: 16 bytes (random here: the server cannot tell). */
export function blindToken(size = 16): Uint8Array {
  return nacl.randomBytes(size);
}

/** Asserts two byte strings are equal, showing where they differ. */
export function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, what: string): void {
  assert.ok(actual, `${what}: missing`);
  if (Buffer.compare(Buffer.from(actual), Buffer.from(expected)) === 0) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  assert.fail(`${what}: ${actual.length} bytes, expected ${expected.length}; first difference at byte ${i}`);
}

/** Asserts the message holds exactly this envelope, byte for byte. */
export function assertEnvelope(m: Message | undefined, expected: EnvelopeInit, what: string): void {
  assert.ok(m, `${what}: no message`);
  assert.equal(m.content.case, "envelope", `${what}: the content is an envelope`);
  if (m.content.case !== "envelope") return;
  const e = m.content.value;
  assertBytes(e.ciphertext, expected.ciphertext, `${what}: ciphertext`);
  assertBytes(e.nonce, expected.nonce, `${what}: nonce`);
  assert.equal(e.algorithm, expected.algorithm, `${what}: algorithm`);
  assert.equal(e.keyId, expected.keyId, `${what}: key_id`);
  assert.equal(e.keyEpoch, expected.keyEpoch, `${what}: key_epoch`);
}

/** The reasons of the google.rpc.ErrorInfo details of an error. */
export function errorInfoReasons(err: ConnectError): string[] {
  return err.findDetails(ErrorInfoSchema).map((d) => d.reason);
}
