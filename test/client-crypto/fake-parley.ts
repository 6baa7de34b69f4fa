/**
 * An in-memory stand-in for the parts of the Parley server the key manager calls (KeyService,
 * ConversationService.GetConversation/ListMembers, MessageService.GetMessage), reached through
 * Connect's router transport, so the key manager's flows run without a server. It follows the
 * contract's comments where the key manager relies on them and counts calls per RPC.
 */
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport, type HandlerContext, type Transport } from "@connectrpc/connect";
import nacl from "tweetnacl";
import { ConversationSchema, ConversationType, MemberSchema, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../../gen/parley/v1/conversation_service_pb.ts";
import { DeviceSchema, ToDeviceMessageSchema, type Device, type Prekey, type ToDeviceMessage } from "../../gen/parley/v1/device_pb.ts";
import { KeyService } from "../../gen/parley/v1/key_service_pb.ts";
import { MessageSchema, type EncryptedEnvelope, type Message } from "../../gen/parley/v1/message_pb.ts";
import { MessageService } from "../../gen/parley/v1/message_service_pb.ts";

interface StoredDevice {
  device: Device;
  revoked: boolean;
  prekeys: Prekey[];
}

interface StoredConversation {
  id: string;
  type: ConversationType;
  blindSearch: boolean;
  keyEpoch: number;
  members: string[];
  messages: Message[];
}

const USER_HEADER = "x-test-user";

export class FakeParley {
  readonly calls = new Map<string, number>();
  readonly #devices = new Map<string, StoredDevice>();
  readonly #inboxes = new Map<string, ToDeviceMessage[]>();
  readonly #conversations = new Map<string, StoredConversation>();
  #nextId = 1;

  /** A transport whose calls are made as userId. */
  transportFor(userId: string): Transport {
    return createRouterTransport(
      (router) => {
        router.service(KeyService, this.#keyService());
        router.service(ConversationService, this.#conversationService());
        router.service(MessageService, this.#messageService());
      },
      { transport: { interceptors: [(next) => (request) => (request.header.set(USER_HEADER, userId), next(request))] } },
    );
  }

  /** Makes an encrypted conversation of the members. */
  createConversation(type: ConversationType, members: string[], blindSearch = false): string {
    const id = `conv-${this.#nextId++}`;
    this.#conversations.set(id, { id, type, blindSearch, keyEpoch: 1, members: [...members], messages: [] });
    return id;
  }

  /** The conversation as userId's client sees it. */
  conversationFor(conversationId: string, userId: string): Conversation {
    const stored = this.#conversation(conversationId);
    return create(ConversationSchema, {
      id: stored.id,
      type: stored.type,
      encrypted: true,
      blindSearch: stored.blindSearch,
      keyEpoch: stored.keyEpoch,
      memberCount: stored.members.length,
      directPeerId: stored.type === ConversationType.DIRECT ? (stored.members.find((member) => member !== userId) ?? "") : "",
    });
  }

  /** Stores a message as SendMessage would, checking the epoch. */
  post(conversationId: string, senderId: string, envelope: EncryptedEnvelope): Message {
    const stored = this.#conversation(conversationId);
    if (envelope.keyEpoch !== stored.keyEpoch) throw new Error("STALE_KEY_EPOCH");
    const message = create(MessageSchema, {
      id: `msg-${this.#nextId++}`,
      conversationId,
      seq: BigInt(stored.messages.length + 1),
      senderId,
      content: { case: "envelope", value: envelope },
    });
    stored.messages.push(message);
    return message;
  }

  /** Removes a member; the epoch moves on as the server's does. */
  removeMember(conversationId: string, userId: string): void {
    const stored = this.#conversation(conversationId);
    stored.members = stored.members.filter((member) => member !== userId);
    stored.keyEpoch++;
  }

  /** Adds a member (the epoch stays). */
  addMember(conversationId: string, userId: string): void {
    this.#conversation(conversationId).members.push(userId);
  }

  /** How many prekeys of the device are left to claim. */
  unclaimedPrekeys(deviceId: string): number {
    return this.#devices.get(deviceId)?.prekeys.length ?? 0;
  }

  /** Drops prekeys of a device as if other users had claimed them. */
  discardPrekeys(deviceId: string, count: number): void {
    this.#devices.get(deviceId)?.prekeys.splice(0, count);
  }

  /** What waits in a device's inbox. */
  inbox(deviceId: string): ToDeviceMessage[] {
    return this.#inboxes.get(deviceId) ?? [];
  }

  #count(name: string): void {
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
  }

  #conversation(conversationId: string): StoredConversation {
    const stored = this.#conversations.get(conversationId);
    if (stored === undefined) throw new ConnectError("no such conversation", Code.NotFound);
    return stored;
  }

  #ownDevice(context: HandlerContext, deviceId: string): StoredDevice {
    const stored = this.#devices.get(deviceId);
    if (stored === undefined || stored.revoked || stored.device.userId !== caller(context)) throw new ConnectError("not your device", Code.NotFound);
    return stored;
  }

  #keyService() {
    return {
      registerDevice: (request: { signingPublicKey: Uint8Array; boxPublicKey: Uint8Array; boxKeySignature: Uint8Array; displayName: string; prekeys: Prekey[] }, context: HandlerContext) => {
        this.#count("registerDevice");
        if (!nacl.sign.detached.verify(request.boxPublicKey, request.boxKeySignature, request.signingPublicKey)) {
          throw new ConnectError("bad signature", Code.InvalidArgument);
        }
        const existing = [...this.#devices.values()].find((stored) => nacl.verify(stored.device.signingPublicKey, request.signingPublicKey));
        if (existing !== undefined) return { device: existing.device, created: false };
        const device = create(DeviceSchema, {
          deviceId: `dev-${this.#nextId++}`,
          userId: caller(context),
          signingPublicKey: request.signingPublicKey,
          boxPublicKey: request.boxPublicKey,
          boxKeySignature: request.boxKeySignature,
          displayName: request.displayName,
          createdAt: timestampNow(),
        });
        this.#devices.set(device.deviceId, { device, revoked: false, prekeys: [...request.prekeys] });
        return { device, created: true };
      },
      listDevices: (request: { userIds: string[] }, context: HandlerContext) => {
        this.#count("listDevices");
        const devices = request.userIds.flatMap((userId) =>
          [...this.#devices.values()]
            .filter((stored) => stored.device.userId === userId && !stored.revoked)
            .map((stored) => create(DeviceSchema, { ...stored.device, unclaimedPrekeys: userId === caller(context) ? stored.prekeys.length : 0 })),
        );
        return { devices };
      },
      uploadPrekeys: (request: { deviceId: string; prekeys: Prekey[] }, context: HandlerContext) => {
        this.#count("uploadPrekeys");
        const stored = this.#ownDevice(context, request.deviceId);
        for (const prekey of request.prekeys) {
          if (!nacl.sign.detached.verify(prekey.publicKey, prekey.signature, stored.device.signingPublicKey)) throw new ConnectError("bad prekey", Code.InvalidArgument);
        }
        stored.prekeys.push(...request.prekeys);
        return { unclaimedPrekeys: stored.prekeys.length };
      },
      claimPrekeys: (request: { deviceIds: string[] }) => {
        this.#count("claimPrekeys");
        return { claimed: request.deviceIds.map((deviceId) => ({ deviceId, prekey: this.#devices.get(deviceId)?.prekeys.shift() })) };
      },
      revokeDevice: (request: { deviceId: string }, context: HandlerContext) => {
        this.#count("revokeDevice");
        this.#ownDevice(context, request.deviceId).revoked = true;
        for (const stored of this.#conversations.values()) if (stored.members.includes(caller(context))) stored.keyEpoch++;
        return {};
      },
      sendToDevice: (request: { senderDeviceId: string; messages: Array<{ recipientDeviceId: string; ciphertext: Uint8Array; nonce: Uint8Array; algorithm: string; prekeyId: number }> }, context: HandlerContext) => {
        this.#count("sendToDevice");
        this.#ownDevice(context, request.senderDeviceId);
        for (const outgoing of request.messages) {
          const recipient = this.#devices.get(outgoing.recipientDeviceId);
          if (recipient === undefined || recipient.revoked) throw new ConnectError("no such device", Code.NotFound);
        }
        const messageIds = request.messages.map((outgoing) => {
          const message = create(ToDeviceMessageSchema, {
            ...outgoing,
            id: `tdm-${this.#nextId++}`,
            senderUserId: caller(context),
            senderDeviceId: request.senderDeviceId,
            createdAt: timestampNow(),
          });
          this.#inboxes.set(outgoing.recipientDeviceId, [...this.inbox(outgoing.recipientDeviceId), message]);
          return message.id;
        });
        return { messageIds };
      },
      listToDeviceMessages: (request: { deviceId: string; pageSize: number; pageToken: string }, context: HandlerContext) => {
        this.#count("listToDeviceMessages");
        this.#ownDevice(context, request.deviceId);
        const after = this.inbox(request.deviceId).filter((message) => request.pageToken === "" || idNumber(message.id) > Number(request.pageToken));
        const messages = after.slice(0, request.pageSize || 100);
        const more = after.length > messages.length;
        return { messages, nextPageToken: more ? String(idNumber(messages.at(-1)?.id ?? "")) : "" };
      },
      ackToDeviceMessages: (request: { deviceId: string; messageIds: string[] }, context: HandlerContext) => {
        this.#count("ackToDeviceMessages");
        this.#ownDevice(context, request.deviceId);
        const before = this.inbox(request.deviceId);
        this.#inboxes.set(request.deviceId, before.filter((message) => !request.messageIds.includes(message.id)));
        return { deleted: before.length - this.inbox(request.deviceId).length };
      },
    };
  }

  #conversationService() {
    return {
      getConversation: (request: { conversationId: string }, context: HandlerContext) => {
        this.#count("getConversation");
        return { conversation: this.conversationFor(request.conversationId, caller(context)) };
      },
      listMembers: (request: { conversationId: string }) => {
        this.#count("listMembers");
        return { members: this.#conversation(request.conversationId).members.map((userId) => create(MemberSchema, { userId })), nextPageToken: "" };
      },
    };
  }

  #messageService() {
    return {
      getMessage: (request: { conversationId: string; seq: bigint }) => {
        this.#count("getMessage");
        const message = this.#conversation(request.conversationId).messages[Number(request.seq) - 1];
        if (message === undefined) throw new ConnectError("no such message", Code.NotFound);
        return { message };
      },
    };
  }
}

function caller(context: HandlerContext): string {
  const userId = context.requestHeader.get(USER_HEADER);
  if (userId === null) throw new ConnectError("unauthenticated", Code.Unauthenticated);
  return userId;
}

function idNumber(id: string): number {
  return Number(id.split("-")[1]);
}
