/**
 * What this device hands out for its own sends: per (conversation, epoch) its sender key
 * (GROUP) and the blind-search key, and which devices already have them. Keys reach a device
 * before the first message that needs them; a device that appears later (new member, new
 * device) gets them at the next send or event. A new epoch starts a new record, so a removed
 * member's or revoked device's copy opens nothing sent after it (lazy rotation).
 */
import { create } from "@bufbuild/protobuf";
import { SenderKeyDistributionSchema, ToDevicePayloadSchema } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { ConversationType, type Conversation } from "../../../gen/parley/v1/conversation_pb.ts";
import type { Device } from "../../../gen/parley/v1/device_pb.ts";
import { CodecRefusedError } from "../codec.ts";
import type { ClientStore } from "../storage.ts";
import { chainKeyAt, createSenderKey, type SenderKey } from "../crypto/index.ts";
import type { DeviceDirectory } from "./device-directory.ts";
import type { LocalDevice } from "./device-identity.ts";
import type { MemberDirectory } from "./member-directory.ts";
import type { SearchKeyStore } from "./search-keys.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";
import type { ToDeviceSender } from "./to-device-sender.ts";

/** This device's keys for one (conversation, epoch). */
export interface OutgoingKeyRecord {
  readonly conversationId: string;
  readonly keyEpoch: number;
  /** GROUP only: the link to use next, and the first link (to reread and re-share). */
  readonly senderKey?: { readonly current: SenderKey; readonly first: SenderKey };
  /** Devices the keys were sent to. */
  readonly distributedTo: readonly string[];
  /**
   * GROUP only: the link each device was first given, by device id. A key request from
   * another user's device is answered from this link, never an earlier one, so a member added
   * mid-epoch or a device registered since reads nothing sent before it got the key. (Absent
   * in records kept before this was recorded: such devices get the current link.)
   */
  readonly givenAt?: Readonly<Record<string, number>>;
}

/** What a send needs. */
export interface SendingKeys {
  readonly senderKey?: SenderKey | undefined;
  readonly searchKey?: Uint8Array | undefined;
}

export interface OutgoingKeysOptions {
  readonly store: ClientStore;
  readonly local: LocalDevice;
  readonly devices: DeviceDirectory;
  readonly members: MemberDirectory;
  readonly searchKeys: SearchKeyStore;
  readonly toDevice: ToDeviceSender;
}

export class OutgoingKeys {
  readonly #options: OutgoingKeysOptions;

  constructor(options: OutgoingKeysOptions) {
    this.#options = options;
  }

  /**
   * The keys to send with at the conversation's current epoch, made if this is the device's
   * first send in it, and delivered first to every current device that lacks them.
   */
  async prepare(conversation: Conversation): Promise<SendingKeys> {
    const isGroup = conversation.type === ConversationType.GROUP;
    if (!isGroup && !conversation.blindSearch) return {};
    const existing = await this.#load(conversation.id, conversation.keyEpoch);
    const record = existing ?? newRecord(conversation, isGroup);
    const searchKey = conversation.blindSearch ? await this.#options.searchKeys.preferredOrCreate(conversation.id, conversation.keyEpoch) : undefined;
    const distributed = await this.#distribute(conversation, record, searchKey);
    if (distributed !== existing) await this.#save(distributed);
    return { senderKey: record.senderKey?.current, searchKey };
  }

  /** Keeps the sender key's next link once a message used the current one. */
  async advance(record: { conversationId: string; keyEpoch: number }, next: SenderKey): Promise<void> {
    const stored = await this.#load(record.conversationId, record.keyEpoch);
    if (stored?.senderKey === undefined) throw new CodecRefusedError("advancing a sender key this device does not hold");
    await this.#save({ ...stored, senderKey: { ...stored.senderKey, current: next } });
  }

  /** Delivers the current epoch's keys to devices that appeared since (an event's doing). */
  async distributeToNewDevices(conversation: Conversation): Promise<void> {
    const record = await this.#load(conversation.id, conversation.keyEpoch);
    if (record === undefined) return;
    const searchKey = await this.#options.searchKeys.preferred(conversation.id, conversation.keyEpoch);
    await this.#save(await this.#distribute(conversation, record, searchKey));
  }

  /** The record of one of this device's sender keys, by its id. */
  async findBySenderKeyId(conversationId: string, senderKeyId: string): Promise<OutgoingKeyRecord | undefined> {
    const entries = await this.#options.store.list(storeKeys.outgoingKeysOf(conversationId));
    return entries.map(([, bytes]) => decodeRecord<OutgoingKeyRecord>(bytes)).find((record) => record.senderKey?.first.id === senderKeyId);
  }

  /**
   * Sends a sender key again to one device that asked for it (the caller checked that it
   * belongs to a current member). This user's own devices get it from its first link: their
   * own history. Another user's device gets it from the link it was first given, or, never
   * given it, from the current link (which is then recorded as its first): nothing sent in
   * the epoch before it got the key.
   */
  async resend(record: OutgoingKeyRecord, device: Device): Promise<void> {
    const { local, searchKeys, toDevice } = this.#options;
    const searchKey = await searchKeys.preferred(record.conversationId, record.keyEpoch);
    let link: SenderKey | undefined;
    if (record.senderKey !== undefined) {
      const { first, current } = record.senderKey;
      const givenAt = record.givenAt?.[device.deviceId];
      if (device.userId === local.userId) link = first;
      else if (givenAt !== undefined && givenAt >= first.index && givenAt <= current.index) link = { id: first.id, index: givenAt, chainKey: chainKeyAt(first, givenAt) };
      else {
        link = current;
        await this.#save({ ...record, givenAt: { ...record.givenAt, [device.deviceId]: current.index } });
      }
    }
    await toDevice.send([{ device, payload: distributionPayload(record, link, searchKey) }]);
  }

  async #distribute(conversation: Conversation, record: OutgoingKeyRecord, searchKey: Uint8Array | undefined): Promise<OutgoingKeyRecord> {
    if (record.senderKey === undefined && searchKey === undefined) return record;
    const { local, devices, members, toDevice } = this.#options;
    const alreadyHave = new Set([local.deviceId, ...record.distributedTo]);
    const recipients = (await devices.devicesOf(await members.membersOf(conversation))).filter((device) => !alreadyHave.has(device.deviceId));
    if (recipients.length === 0) return record;
    const payload = distributionPayload(record, record.senderKey?.current, searchKey);
    await toDevice.send(recipients.map((device) => ({ device, payload })));
    const distributedTo = [...record.distributedTo, ...recipients.map((device) => device.deviceId)];
    const current = record.senderKey?.current;
    if (current === undefined) return { ...record, distributedTo };
    const givenAt = { ...record.givenAt, ...Object.fromEntries(recipients.map((device) => [device.deviceId, current.index])) };
    return { ...record, distributedTo, givenAt };
  }

  async #load(conversationId: string, keyEpoch: number): Promise<OutgoingKeyRecord | undefined> {
    const bytes = await this.#options.store.get(storeKeys.outgoingKeys(conversationId, keyEpoch));
    return bytes === undefined ? undefined : decodeRecord<OutgoingKeyRecord>(bytes);
  }

  async #save(record: OutgoingKeyRecord): Promise<void> {
    await this.#options.store.put(storeKeys.outgoingKeys(record.conversationId, record.keyEpoch), encodeRecord(record));
  }
}

function newRecord(conversation: Conversation, isGroup: boolean): OutgoingKeyRecord {
  const base = { conversationId: conversation.id, keyEpoch: conversation.keyEpoch, distributedTo: [] };
  if (!isGroup) return base;
  const senderKey = createSenderKey();
  return { ...base, senderKey: { current: senderKey, first: senderKey } };
}

/** A SenderKeyDistribution at the given link; a DIRECT conversation's carries its search key only. */
function distributionPayload(record: OutgoingKeyRecord, link: SenderKey | undefined, searchKey: Uint8Array | undefined) {
  const distribution = create(SenderKeyDistributionSchema, {
    conversationId: record.conversationId,
    keyEpoch: record.keyEpoch,
    senderKeyId: link?.id ?? "",
    index: link?.index ?? 0,
    chainKey: link?.chainKey ?? new Uint8Array(0),
    searchKey: searchKey ?? new Uint8Array(0),
  });
  return create(ToDevicePayloadSchema, { kind: { case: "senderKey", value: distribution } });
}
