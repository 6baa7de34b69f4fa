/**
 * The E2E key manager: the MessageCodec the session layer encrypts and decrypts through. It
 * owns this device's identity and every key it holds, talks to KeyService, ConversationService
 * and MessageService through the generated clients, and keeps all state in a ClientStore, so
 * the same store opened again restores the device.
 *
 * Calls run one at a time (see SerialQueue): each reads and writes key state in the store.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import type { GroupCiphertext, PlainContent, SenderKeyDistribution, ToDevicePayload } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import { ConversationType, type Conversation } from "../../../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../../../gen/parley/v1/conversation_service_pb.ts";
import type { Device } from "../../../gen/parley/v1/device_pb.ts";
import type { Event } from "../../../gen/parley/v1/event_pb.ts";
import { KeyService } from "../../../gen/parley/v1/key_service_pb.ts";
import type { EncryptedEnvelope, Message } from "../../../gen/parley/v1/message_pb.ts";
import { MessageService } from "../../../gen/parley/v1/message_service_pb.ts";
import { BlindQuerySchema, type BlindQuery } from "../../../gen/parley/v1/search_service_pb.ts";
import { CodecRefusedError, MAX_BLIND_QUERIES_PER_CALL, type MessageCodec } from "../codec.ts";
import type { ClientStore } from "../storage.ts";
import {
  DIRECT_ALGORITHM,
  DecryptError,
  GROUP_ALGORITHM,
  MAX_TOKENS_PER_QUERY,
  blindToken,
  blindTokens,
  chainKeyAt,
  messageKeyOf,
  openDirectBody,
  openDirectMessageKey,
  openGroup,
  openGroupWithMessageKey,
  readDirectCiphertext,
  readGroupCiphertext,
  safetyNumber,
  sealDirect,
  sealGroup,
  searchWords,
  type SenderKey,
} from "../crypto/index.ts";
import { DeviceDirectory } from "./device-directory.ts";
import { loadOrCreateDeviceKeys, loadOrRegisterDeviceId, type LocalDevice } from "./device-identity.ts";
import { DirectKeys } from "./direct-keys.ts";
import { Inbox } from "./inbox.ts";
import { IncomingGroupKeys } from "./incoming-group-keys.ts";
import { KeyRequests, type MissingKey } from "./key-requests.ts";
import { MemberDirectory } from "./member-directory.ts";
import { OutgoingKeys } from "./outgoing-keys.ts";
import { PrekeyPool } from "./prekey-pool.ts";
import { SearchKeyStore } from "./search-keys.ts";
import { SerialQueue } from "./serial-queue.ts";
import type { ConversationServiceClient, KeyServiceClient } from "./services.ts";
import { ToDeviceSender } from "./to-device-sender.ts";

const SEARCH_KEY_LENGTH = 32;
const MESSAGE_KEY_LENGTH = 32;

export interface KeyManagerOptions {
  /** Where the device's keys and key state live; the same store restores the same device. */
  readonly store: ClientStore;
  /** A Connect transport authenticated as userId. */
  readonly transport: Transport;
  /** The signed-in user. */
  readonly userId: string;
  /** The name the directory shows for the device when it is registered. */
  readonly deviceName: string;
  /**
   * Hears of to-device payloads that were dropped (cannot open, from an unknown device, not
   * acceptable) or left for the next drain, and of key requests that could not be sent.
   */
  readonly onError?: (error: unknown) => void;
}

export class E2EKeyManager implements MessageCodec {
  readonly #local: LocalDevice;
  readonly #queue = new SerialQueue();
  readonly #conversations: ConversationServiceClient;
  readonly #devices: DeviceDirectory;
  readonly #members: MemberDirectory;
  readonly #outgoing: OutgoingKeys;
  readonly #incoming: IncomingGroupKeys;
  readonly #searchKeys: SearchKeyStore;
  readonly #directKeys: DirectKeys;
  readonly #keyRequests: KeyRequests;
  readonly #inbox: Inbox;
  readonly #onError: (error: unknown) => void;
  /** Set once the feed said this device was revoked: it must not send with its old keys. */
  #revoked = false;
  /** The newest epoch seen of each conversation in this run. */
  readonly #knownEpochs = new Map<string, number>();
  /** The epoch each conversation was last encrypted at in this run (see #refreshOnNewEpoch). */
  readonly #epochEncryptedAt = new Map<string, number>();

  /**
   * Opens the device kept in the store: with an empty store it makes keys, stores them and
   * registers a new device; with a used one it restores that device. Either way the device's
   * prekeys are topped up before it returns. Call syncInbox() next.
   */
  static async open(options: KeyManagerOptions): Promise<E2EKeyManager> {
    const keyService = createClient(KeyService, options.transport);
    const keys = await loadOrCreateDeviceKeys(options.store);
    const prekeys = new PrekeyPool(options.store, keys.signing.secretKey);
    const deviceId = await loadOrRegisterDeviceId(options.store, keyService, keys, prekeys, options.deviceName);
    await prekeys.topUp(keyService, deviceId, options.userId);
    return new E2EKeyManager(options, keyService, prekeys, { userId: options.userId, deviceId, keys });
  }

  private constructor(options: KeyManagerOptions, keyService: KeyServiceClient, prekeys: PrekeyPool, local: LocalDevice) {
    const { store, transport } = options;
    this.#local = local;
    this.#onError = options.onError ?? (() => undefined);
    this.#conversations = createClient(ConversationService, transport);
    this.#devices = new DeviceDirectory(keyService, store, this.#onError);
    this.#members = new MemberDirectory(this.#conversations, local.userId);
    this.#searchKeys = new SearchKeyStore(store);
    this.#incoming = new IncomingGroupKeys(store);
    this.#directKeys = new DirectKeys(store);
    const toDevice = new ToDeviceSender(keyService, local);
    this.#outgoing = new OutgoingKeys({ store, local, devices: this.#devices, members: this.#members, searchKeys: this.#searchKeys, toDevice });
    this.#keyRequests = new KeyRequests({
      local,
      devices: this.#devices,
      members: this.#members,
      messages: createClient(MessageService, transport),
      outgoing: this.#outgoing,
      toDevice,
    });
    this.#inbox = new Inbox({ keyService, local, devices: this.#devices, prekeys, handle: (payload, sender) => this.#handlePayload(payload, sender), onError: this.#onError });
  }

  /** The directory's id for this device. */
  get deviceId(): string {
    return this.#local.deviceId;
  }

  /** This device's Ed25519 public key: its identity in safety numbers. */
  get signingPublicKey(): Uint8Array {
    return this.#local.keys.signing.publicKey;
  }

  /** The safety number between this device and another user's device, to compare out of band. */
  safetyNumberWith(device: Device): string {
    return safetyNumber(
      { userId: this.#local.userId, signingPublicKey: this.#local.keys.signing.publicKey },
      { userId: device.userId, signingPublicKey: device.signingPublicKey },
    );
  }

  encrypt(conversation: Conversation, content: PlainContent): Promise<{ envelope: EncryptedEnvelope; searchTokens: Uint8Array[] }> {
    return this.#queue.run(async () => {
      if (this.#revoked) throw new CodecRefusedError("this device was revoked: open a new one (fresh keys) to send again");
      if (!conversation.encrypted) throw new CodecRefusedError(`conversation ${conversation.id} is not encrypted`);
      this.#noteEpoch(conversation);
      await this.#refreshOnNewEpoch(conversation);
      // prepare() gives a sender key exactly when the conversation is a GROUP.
      const { senderKey, searchKey } = await this.#outgoing.prepare(conversation);
      const envelope = senderKey === undefined ? await this.#sealDirect(conversation, content) : await this.#sealGroup(conversation, content, senderKey);
      return { envelope, searchTokens: searchKey === undefined ? [] : blindTokens(searchKey, content.text) };
    });
  }

  decrypt(conversation: Conversation, message: Message): Promise<PlainContent> {
    return this.#queue.run(async () => {
      if (message.content.case !== "envelope") throw new DecryptError("malformed", "the message carries no envelope");
      this.#noteEpoch(conversation);
      const envelope = message.content.value;
      // Each kind of conversation has its construction: an envelope of the other kind was moved.
      const expected = conversation.type === ConversationType.DIRECT ? DIRECT_ALGORITHM : GROUP_ALGORITHM;
      if (envelope.algorithm !== expected) throw new DecryptError("tampered", `a ${envelope.algorithm} envelope in a conversation that uses ${expected}`);
      return envelope.algorithm === DIRECT_ALGORITHM ? this.#openDirect(conversation, message, envelope) : this.#openGroup(conversation, message, envelope);
    });
  }

  blindQueries(conversation: Conversation, query: string): Promise<BlindQuery[]> {
    return this.#queue.run(async () => {
      const words = searchWords(query, MAX_TOKENS_PER_QUERY);
      if (!conversation.blindSearch || words.length === 0) return [];
      const epochs = await this.#searchKeys.byEpoch(conversation.id);
      const queries = epochs.flatMap(({ keyEpoch, keys }) =>
        keys.map((key) => create(BlindQuerySchema, { conversationId: conversation.id, keyEpoch, tokens: words.map((word) => blindToken(key, word)) })),
      );
      return queries.slice(0, MAX_BLIND_QUERIES_PER_CALL);
    });
  }

  onEvent(event: Event): Promise<void> {
    return this.#queue.run(async () => {
      const { kind } = event;
      switch (kind.case) {
        case "deviceChanged":
          if (kind.value.revoked && kind.value.deviceId === this.#local.deviceId) this.#revoked = true;
          this.#devices.invalidate(kind.value.userId);
          if (kind.value.revoked && event.conversationId !== "") {
            await this.#devices.recordRevocation(kind.value.deviceId, event.conversationId, kind.value.keyEpoch);
          }
          if (!kind.value.revoked && event.conversationId !== "") await this.#distributeToNewDevices(event.conversationId);
          return;
        case "memberAdded":
          this.#members.invalidate(event.conversationId);
          if (kind.value.member !== undefined) this.#devices.invalidate(kind.value.member.userId);
          await this.#distributeToNewDevices(event.conversationId);
          return;
        case "memberRemoved":
          this.#members.invalidate(event.conversationId);
          return;
        case "toDeviceMessage":
          if (kind.value.message !== undefined) await this.#inbox.receive(kind.value.message);
          return;
        default:
          return;
      }
    });
  }

  syncInbox(): Promise<void> {
    return this.#queue.run(() => this.#inbox.drain());
  }

  /**
   * Before the first send of a run, and when the epoch moved on (someone left, a device was
   * revoked), members and devices are fetched afresh: keys must reach exactly the members and
   * devices there are now, whatever events this device missed.
   */
  async #refreshOnNewEpoch(conversation: Conversation): Promise<void> {
    if (this.#epochEncryptedAt.get(conversation.id) === conversation.keyEpoch) return;
    this.#members.invalidate(conversation.id);
    for (const userId of await this.#members.membersOf(conversation)) this.#devices.invalidate(userId);
    this.#epochEncryptedAt.set(conversation.id, conversation.keyEpoch);
  }

  /**
   * The message key boxed to the peer's devices, this user's other devices and this device
   * itself (so it rereads its own messages from the envelope, however old).
   */
  async #sealDirect(conversation: Conversation, content: PlainContent): Promise<EncryptedEnvelope> {
    const peerId = conversation.directPeerId;
    const listed = (await this.#devices.devicesOf([peerId, this.#local.userId])).filter((device) => device.deviceId !== this.#local.deviceId);
    if (!listed.some((device) => device.userId === peerId)) throw new CodecRefusedError(`user ${peerId} has no device to encrypt to`);
    const self = { deviceId: this.#local.deviceId, boxPublicKey: this.#local.keys.box.publicKey };
    const sealed = await sealDirect({
      content,
      conversationId: conversation.id,
      senderDeviceId: this.#local.deviceId,
      senderBoxSecretKey: this.#local.keys.box.secretKey,
      recipients: [...listed, self],
      keyEpoch: conversation.keyEpoch,
    });
    return sealed.envelope;
  }

  /** Sealed with the sender key's current link; the next link is stored before returning. */
  async #sealGroup(conversation: Conversation, content: PlainContent, senderKey: SenderKey): Promise<EncryptedEnvelope> {
    const sealed = await sealGroup({
      content,
      conversationId: conversation.id,
      keyEpoch: conversation.keyEpoch,
      senderDeviceId: this.#local.deviceId,
      signingSecretKey: this.#local.keys.signing.secretKey,
      senderKey,
    });
    await this.#outgoing.advance({ conversationId: conversation.id, keyEpoch: conversation.keyEpoch }, sealed.nextSenderKey);
    return sealed.envelope;
  }

  async #openDirect(conversation: Conversation, message: Message, envelope: EncryptedEnvelope): Promise<PlainContent> {
    const ciphertext = readDirectCiphertext(envelope);
    const recipient = { deviceId: this.#local.deviceId, boxSecretKey: this.#local.keys.box.secretKey };
    if (ciphertext.senderDeviceId === this.#local.deviceId) {
      if (message.senderId !== this.#local.userId) throw new DecryptError("tampered", "another user's message names this device as its sender");
      return openDirectBody(envelope, ciphertext, await openDirectMessageKey(ciphertext, recipient, this.#local.keys.box.publicKey), conversation.id);
    }
    const known = await this.#devices.knownDevice(message.senderId, ciphertext.senderDeviceId);
    if (known === undefined) throw new DecryptError("unknown_key", "this client never verified the sender's device");
    if (!known.listed) await this.#refuseAfterRevocation(conversation, message, envelope, ciphertext.senderDeviceId);
    if (ciphertext.keyBoxes.some((keyBox) => keyBox.deviceId === this.#local.deviceId)) {
      const messageKey = await openDirectMessageKey(ciphertext, recipient, known.device.boxPublicKey);
      return openDirectBody(envelope, ciphertext, messageKey, conversation.id);
    }
    const shared = await this.#directKeys.sharedKey(conversation.id, message.seq);
    if (shared?.senderDeviceId === ciphertext.senderDeviceId) return openDirectBody(envelope, ciphertext, shared.messageKey, conversation.id);
    await this.#askForKey(message.senderId, ciphertext.senderDeviceId, { conversationId: conversation.id, seq: message.seq });
    throw new DecryptError("not_for_this_device", "the message key was not boxed to this device; its sender was asked for it");
  }

  async #openGroup(conversation: Conversation, message: Message, envelope: EncryptedEnvelope): Promise<PlainContent> {
    const ciphertext = readGroupCiphertext(envelope);
    if (ciphertext.senderDeviceId === this.#local.deviceId) return this.#openOwnGroup(conversation, envelope, ciphertext);
    const key = await this.#incoming.find(ciphertext.senderDeviceId, ciphertext.senderKeyId);
    if (key === undefined) {
      await this.#askForKey(message.senderId, ciphertext.senderDeviceId, { conversationId: conversation.id, senderKeyId: ciphertext.senderKeyId });
      const reason = envelope.keyEpoch > conversation.keyEpoch ? "stale_epoch" : "unknown_key";
      throw new DecryptError(reason, "this device holds no such sender key; its sender was asked for it");
    }
    if (key.conversationId !== conversation.id || key.keyEpoch !== envelope.keyEpoch || key.senderUserId !== message.senderId) {
      throw new DecryptError("tampered", "the sender key was given for another conversation, epoch or user");
    }
    const revokedAt = await this.#devices.revokedAtEpoch(ciphertext.senderDeviceId, conversation.id);
    if (revokedAt !== undefined && envelope.keyEpoch >= revokedAt) {
      throw new DecryptError("unknown_key", "the sender device was revoked before this epoch");
    }
    const link = { senderDeviceId: key.senderDeviceId, senderKeyId: key.senderKeyId, index: ciphertext.index };
    const opened = await this.#incoming.openedWith(link);
    if (opened !== undefined) {
      // Signature and body first: an altered copy is tampered, whatever else it is.
      const content = await openGroupWithMessageKey(envelope, ciphertext, conversation.id, opened.messageKey, key.senderSigningPublicKey);
      // Every version of a message (its edits) has a link of its own, all at the message's seq.
      if (opened.conversationId !== conversation.id || opened.seq !== message.seq) {
        throw new DecryptError("replayed", "this envelope already opened as another message");
      }
      return content;
    }
    if (ciphertext.index < key.chain.startIndex && message.senderId === this.#local.userId) {
      // A new device of this user got the chain from a later link: the earlier links are its
      // own history, which its other device hands over on request. Another user's device is
      // given nothing before its first link, so it does not ask (see key-requests.ts).
      await this.#askForKey(message.senderId, ciphertext.senderDeviceId, { conversationId: conversation.id, senderKeyId: ciphertext.senderKeyId });
    }
    const result = await openGroup(envelope, ciphertext, conversation.id, key.chain, key.senderSigningPublicKey);
    await this.#incoming.save({ ...key, chain: result.nextChain });
    await this.#incoming.rememberOpened(link, { conversationId: conversation.id, seq: message.seq, messageKey: result.messageKey });
    return result.content;
  }

  /** This device's own group message: its key is derived again from the sender key's first link. */
  async #openOwnGroup(conversation: Conversation, envelope: EncryptedEnvelope, ciphertext: GroupCiphertext): Promise<PlainContent> {
    const record = await this.#outgoing.findBySenderKeyId(conversation.id, ciphertext.senderKeyId);
    if (record?.senderKey === undefined || ciphertext.index >= record.senderKey.current.index) {
      throw new DecryptError("unknown_key", "this device never sent with that sender key and index");
    }
    if (record.keyEpoch !== envelope.keyEpoch) throw new DecryptError("tampered", "the sender key belongs to another epoch");
    const messageKey = messageKeyOf(chainKeyAt(record.senderKey.first, ciphertext.index));
    return openGroupWithMessageKey(envelope, ciphertext, conversation.id, messageKey, this.#local.keys.signing.publicKey);
  }

  /**
   * A message from a device the directory no longer lists opens only if it was sent (or last
   * edited) before the device was revoked, by the server's clock; when the directory cannot
   * say when, only if it was sealed for an epoch before the revocation's (as a device_changed
   * event told) or, with no event heard, before the conversation's current epoch.
   */
  async #refuseAfterRevocation(conversation: Conversation, message: Message, envelope: EncryptedEnvelope, senderDeviceId: string): Promise<void> {
    const revokedAtMs = await this.#devices.revokedAtMs(message.senderId, senderDeviceId);
    const sentAt = message.editedAt ?? message.createdAt;
    if (revokedAtMs !== undefined && sentAt !== undefined) {
      if (timestampMs(sentAt) >= revokedAtMs) throw new DecryptError("unknown_key", "the sender device was revoked before this message was written");
      return;
    }
    const revokedAt = (await this.#devices.revokedAtEpoch(senderDeviceId, conversation.id)) ?? conversation.keyEpoch;
    if (envelope.keyEpoch >= revokedAt) throw new DecryptError("unknown_key", "the sender device was revoked before this epoch");
  }

  /** Remembers the newest epoch seen of a conversation (see #installDistribution). */
  #noteEpoch(conversation: Conversation): void {
    if (conversation.keyEpoch > (this.#knownEpochs.get(conversation.id) ?? 0)) this.#knownEpochs.set(conversation.id, conversation.keyEpoch);
  }

  /** Asks for a missing key; failing to ask must not hide the DecryptError the caller gets. */
  async #askForKey(senderUserId: string, senderDeviceId: string, missing: MissingKey): Promise<void> {
    try {
      await this.#keyRequests.ask(senderUserId, senderDeviceId, missing);
    } catch (error) {
      this.#onError(error);
    }
  }

  async #distributeToNewDevices(conversationId: string): Promise<void> {
    const conversation = await this.#conversationOrUndefined(conversationId);
    if (conversation?.encrypted === true) await this.#outgoing.distributeToNewDevices(conversation);
  }

  /** The conversation, or undefined when the server does not show it to this user (NOT_FOUND: they left or were removed). */
  async #conversationOrUndefined(conversationId: string): Promise<Conversation | undefined> {
    try {
      return (await this.#conversations.getConversation({ conversationId })).conversation;
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
      throw error;
    }
  }

  async #handlePayload(payload: ToDevicePayload, sender: Device): Promise<void> {
    switch (payload.kind.case) {
      case "senderKey":
        return this.#installDistribution(payload.kind.value, sender);
      case "keyRequest":
        return this.#keyRequests.answer(payload.kind.value, sender);
      case "messageKey": {
        const share = payload.kind.value;
        if (share.messageKey.length !== MESSAGE_KEY_LENGTH) throw new DecryptError("malformed", "a shared message key has the wrong length");
        return this.#directKeys.rememberShared(share.conversationId, share.seq, { senderDeviceId: sender.deviceId, messageKey: share.messageKey });
      }
      default:
        throw new DecryptError("malformed", "a to-device payload of no known kind");
    }
  }

  /**
   * A distribution for an epoch this client has not seen: the conversation is read afresh and
   * the key refused if its epoch is still ahead. Otherwise a device could hand out, before
   * being revoked, a key for the epoch its revocation starts and write in it afterwards. The
   * epoch having moved on, the sender's listing is read afresh too: it may be what moved it.
   */
  async #checkDistributionEpoch(distribution: SenderKeyDistribution, sender: Device): Promise<void> {
    const conversation = await this.#conversationOrUndefined(distribution.conversationId);
    if (conversation === undefined) throw new DecryptError("not_for_this_device", "a key distribution for a conversation this user is no longer in");
    this.#noteEpoch(conversation);
    if (distribution.keyEpoch > conversation.keyEpoch) {
      throw new DecryptError("stale_epoch", "a sender key for an epoch the conversation has not reached");
    }
    this.#devices.invalidate(sender.userId);
    if ((await this.#devices.findDevice(sender.userId, sender.deviceId)) === undefined) {
      throw new DecryptError("unknown_key", "a sender key from a device revoked since it was sent");
    }
  }

  /**
   * Keeps a sender key and search key, but only from a member: a search key from anyone else
   * could be adopted by every member and would let its maker read their tokens.
   */
  async #installDistribution(distribution: SenderKeyDistribution, sender: Device): Promise<void> {
    if (!(await this.#members.isMember(distribution.conversationId, sender.userId))) {
      throw new DecryptError("not_for_this_device", "a key distribution from a user who is not a member of its conversation");
    }
    if (distribution.keyEpoch > (this.#knownEpochs.get(distribution.conversationId) ?? 0)) await this.#checkDistributionEpoch(distribution, sender);
    if (distribution.senderKeyId !== "") await this.#incoming.install(distribution, sender);
    if (distribution.searchKey.length === SEARCH_KEY_LENGTH) await this.#searchKeys.add(distribution.conversationId, distribution.keyEpoch, distribution.searchKey);
  }
}
