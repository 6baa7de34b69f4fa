/**
 * Key requests, both ways. A device missing a key asks the sending device once per missing
 * key (per run: a restart may ask again); a device asked answers only devices of the
 * conversation's current members, with the sender key from its first link (GROUP) or the
 * one message's key (DIRECT, opened from the key box the envelope holds for this device), and
 * only for keys it made itself.
 */
import { create } from "@bufbuild/protobuf";
import { KeyRequestSchema, MessageKeyShareSchema, ToDevicePayloadSchema, type KeyRequest } from "../../../gen/parley/e2e/v1/payload_pb.ts";
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

export class KeyRequests {
  readonly #options: KeyRequestsOptions;
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
  }

  /** Answers a request from a verified device, if its user is a member and the key is ours. */
  async answer(request: KeyRequest, requester: Device): Promise<void> {
    if (!(await this.#options.members.isMember(request.conversationId, requester.userId))) return;
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
    const messageKey = await openDirectMessageKey(readDirectCiphertext(envelope), { deviceId: local.deviceId, boxSecretKey: local.keys.box.secretKey }, local.keys.box.publicKey);
    const share = create(MessageKeyShareSchema, { conversationId, seq, messageKey });
    await toDevice.send([{ device: requester, payload: create(ToDevicePayloadSchema, { kind: { case: "messageKey", value: share } }) }]);
  }
}
