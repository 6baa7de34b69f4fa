/**
 * Key requests, both ways. A device missing a key asks the sending device once per missing
 * key (per run, in a bounded memory: a restart may ask again). A device asked answers only for
 * keys it made itself, and only devices of users who are members now (read afresh with
 * ListMembers, not from the cache). What it hands out follows the rule of Signal and Matrix,
 * that a key request restores keys a device had, never history it was not there for:
 * - this user's own devices get everything: the sender key from its first link (GROUP), any
 *   message's key (DIRECT) — their own history;
 * - another user's device gets a GROUP sender key only from the link it was first given (a
 *   device never given it gets the current link, nothing earlier), and a DIRECT message's key
 *   only if the directory says the device was created (server time) no later than the message.
 * So a device that lost its key state gets it back, but a member added mid-epoch, or a new
 * device of another member, cannot read what was sent before it joined or existed.
 */
import { create } from "@bufbuild/protobuf";
import { KeyRequestSchema, MessageKeyShareSchema, ToDevicePayloadSchema, type KeyRequest } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Device } from "../../../gen/parley/v1/device_pb.ts";
import { DIRECT_ALGORITHM, openDirectMessageKey, readDirectCiphertext } from "../crypto/index.ts";
import type { DeviceDirectory } from "./device-directory.ts";
import type { LocalDevice } from "./device-identity.ts";
import type { MemberDirectory } from "./member-directory.ts";
import type { OutgoingKeys } from "./outgoing-keys.ts";
import type { MessageServiceClient } from "./services.ts";
import type { ToDeviceSender } from "./to-device-sender.ts";

export interface KeyRequestsOptions {
  readonly local: LocalDevice;
  readonly devices: DeviceDirectory;
  readonly members: MemberDirectory;
  readonly messages: MessageServiceClient;
  readonly outgoing: OutgoingKeys;
  readonly toDevice: ToDeviceSender;
}

/** What is missing: a GROUP sender key by id, or a DIRECT message's key by seq. */
export type MissingKey = { readonly conversationId: string } & ({ readonly senderKeyId: string } | { readonly seq: bigint });

/** How many requests a run remembers having sent; older ones may be sent again. */
const MAX_REMEMBERED_REQUESTS = 10_000;

export class KeyRequests {
  readonly #options: KeyRequestsOptions;
  /** Requests sent in this run, oldest first, bounded (see MAX_REMEMBERED_REQUESTS). */
  readonly #asked = new Set<string>();

  constructor(options: KeyRequestsOptions) {
    this.#options = options;
  }

  /** Asks the device that sent a message for its key, unless this run already asked. */
  async ask(senderUserId: string, senderDeviceId: string, missing: MissingKey): Promise<void> {
    const which = "senderKeyId" in missing ? `k:${missing.senderKeyId}` : `s:${missing.seq}`;
    const askedKey = `${senderDeviceId}/${missing.conversationId}/${which}`;
    if (this.#asked.has(askedKey)) return;
    const sender = await this.#options.devices.findDevice(senderUserId, senderDeviceId);
    if (sender === undefined) return;
    const request = create(KeyRequestSchema, {
      conversationId: missing.conversationId,
      senderKeyId: "senderKeyId" in missing ? missing.senderKeyId : "",
      seq: "seq" in missing ? missing.seq : 0n,
    });
    await this.#options.toDevice.send([{ device: sender, payload: create(ToDevicePayloadSchema, { kind: { case: "keyRequest", value: request } }) }]);
    this.#asked.add(askedKey);
    // A Set iterates in insertion order: the oldest request is forgotten first (and may be sent again).
    if (this.#asked.size > MAX_REMEMBERED_REQUESTS) this.#asked.delete(this.#asked.values().next().value as string);
  }

  /** Answers a request from a verified device, if its user is a member now and the key is ours. */
  async answer(request: KeyRequest, requester: Device): Promise<void> {
    const { members } = this.#options;
    members.invalidate(request.conversationId);
    if (!(await members.isMember(request.conversationId, requester.userId))) return;
    if (request.senderKeyId !== "") await this.#resendSenderKey(request.conversationId, request.senderKeyId, requester);
    else if (request.seq > 0n) await this.#shareMessageKey(request.conversationId, request.seq, requester);
  }

  async #resendSenderKey(conversationId: string, senderKeyId: string, requester: Device): Promise<void> {
    const record = await this.#options.outgoing.findBySenderKeyId(conversationId, senderKeyId);
    if (record !== undefined) await this.#options.outgoing.resend(record, requester);
  }

  async #shareMessageKey(conversationId: string, seq: bigint, requester: Device): Promise<void> {
    const { local, messages, toDevice } = this.#options;
    const { message } = await messages.getMessage({ conversationId, seq });
    if (message?.senderId !== local.userId || message.content.case !== "envelope") return;
    const envelope = message.content.value;
    if (envelope.algorithm !== DIRECT_ALGORITHM || envelope.keyId !== local.deviceId) return;
    if (requester.userId !== local.userId && !createdNoLaterThan(requester.createdAt, message.createdAt)) return;
    const messageKey = await openDirectMessageKey(readDirectCiphertext(envelope), { deviceId: local.deviceId, boxSecretKey: local.keys.box.secretKey }, local.keys.box.publicKey);
    const share = create(MessageKeyShareSchema, { conversationId, seq, messageKey });
    await toDevice.send([{ device: requester, payload: create(ToDevicePayloadSchema, { kind: { case: "messageKey", value: share } }) }]);
  }
}

/** Whether the device was created at or before the message (both server times); unknown: no. */
function createdNoLaterThan(deviceCreatedAt: Timestamp | undefined, messageCreatedAt: Timestamp | undefined): boolean {
  if (deviceCreatedAt === undefined || messageCreatedAt === undefined) return false;
  return nanosOf(deviceCreatedAt) <= nanosOf(messageCreatedAt);
}

function nanosOf(timestamp: Timestamp): bigint {
  return timestamp.seconds * 1_000_000_000n + BigInt(timestamp.nanos);
}
