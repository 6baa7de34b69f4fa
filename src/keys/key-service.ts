/**
 * KeyService: the key directory (devices, one-time prekeys) and devices' inboxes of to-device
 * messages. Public keys are public: anyone may list anyone's devices. Everything that changes
 * a device, or reads its inbox, is for its owner only (another user's device is
 * PERMISSION_DENIED: device ids are listed publicly, so there is nothing to hide).
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import type { Prekey } from "../../gen/parley/v1/device_pb.ts";
import {
  AckToDeviceMessagesResponseSchema,
  ClaimedPrekeySchema,
  ClaimPrekeysResponseSchema,
  ListDevicesResponseSchema,
  ListToDeviceMessagesResponseSchema,
  RegisterDeviceResponseSchema,
  RevokeDeviceResponseSchema,
  SendToDeviceResponseSchema,
  UploadPrekeysResponseSchema,
  type AckToDeviceMessagesRequest,
  type ClaimPrekeysRequest,
  type KeyService as KeyServiceDesc,
  type ListDevicesRequest,
  type ListToDeviceMessagesRequest,
  type RegisterDeviceRequest,
  type RevokeDeviceRequest,
  type SendToDeviceRequest,
  type UploadPrekeysRequest,
} from "../../gen/parley/v1/key_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { advanceKeyEpochsOf, findEncryptedConversationsOf } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidInputError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
} from "../errors.ts";
import { newId } from "../ids.ts";
import type { NewEvent } from "../log/event-log.ts";
import { writeWithEvents, type EventPublisher } from "../log/event-publisher.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { boundedText, pageSize, requireInt8Digits, requireUserId, requireUuid } from "../validation.ts";
import * as devices from "./device-repository.ts";
import { deviceChanged, toDeviceMessageReceived } from "./key-events.ts";
import { toDevice, toPrekey, toToDeviceMessage } from "./key-mapper.ts";
import { BOX_KEY_BYTES, SIGNATURE_BYTES, SIGNING_KEY_BYTES, verifiesDetached } from "./signatures.ts";
import * as inbox from "./to-device-repository.ts";

const MAX_DEVICES_PER_USER = 20;
const MAX_PREKEYS_PER_CALL = 100;
const MAX_LISTED_USERS = 500;
const MAX_BATCH = 1_000;
const MAX_DISPLAY_NAME = 64;
const MAX_TO_DEVICE_CIPHERTEXT = 64 * 1024;
const MAX_NONCE_BYTES = 64;
const MAX_ALGORITHM_CHARS = 64;
const DEFAULT_INBOX_PAGE = 100;
const MAX_INBOX_PAGE = 500;

export class KeyService implements ServiceImpl<typeof KeyServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #events: EventPublisher;

  constructor(db: Kysely<Database>, events: EventPublisher) {
    this.#db = db;
    this.#events = events;
  }

  async registerDevice(req: RegisterDeviceRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    requireBytes("signing_public_key", req.signingPublicKey, SIGNING_KEY_BYTES);
    requireBytes("box_public_key", req.boxPublicKey, BOX_KEY_BYTES);
    requireBytes("box_key_signature", req.boxKeySignature, SIGNATURE_BYTES);
    if (!verifiesDetached(req.boxPublicKey, req.boxKeySignature, req.signingPublicKey)) {
      throw new InvalidInputError("box_key_signature", "does not verify: sign box_public_key with the signing key");
    }
    const displayName = boundedText("display_name", req.displayName.trim(), MAX_DISPLAY_NAME);
    const prekeys = checkPrekeys("prekeys", req.prekeys, req.signingPublicKey);

    const existing = await devices.findDeviceBySigningKey(this.#db, req.signingPublicKey);
    if (existing) return this.#answerRepeatedRegistration(existing, userId);
    const { device, created } = await this.#write(async (tx, recorded) => {
      await devices.lockRegistration(tx, req.signingPublicKey, userId);
      // A concurrent registration of the same key may have committed while we waited.
      const raced = await devices.findDeviceBySigningKey(tx, req.signingPublicKey);
      if (raced) return { device: raced, created: false };
      if ((await devices.countActiveDevices(tx, userId)) >= MAX_DEVICES_PER_USER) {
        throw new ResourceExhaustedError(`a user has at most ${MAX_DEVICES_PER_USER} devices: revoke one first`, "TOO_MANY_DEVICES");
      }
      const row = await devices.insertDevice(tx, {
        id: newId(),
        userId,
        signingPublicKey: req.signingPublicKey,
        boxPublicKey: req.boxPublicKey,
        boxKeySignature: req.boxKeySignature,
        displayName,
      });
      if (!(await devices.insertPrekeys(tx, row.id, prekeys))) throw duplicatePrekey();
      recorded.push(...deviceChanged(userId, row.id, false, await findEncryptedConversationsOf(tx, userId)));
      return { device: row, created: true };
    });
    if (!created) return this.#answerRepeatedRegistration(device, userId);
    return create(RegisterDeviceResponseSchema, { device: toDevice(device, prekeys.length), created: true });
  }

  async listDevices(req: ListDevicesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (req.userIds.length === 0 || req.userIds.length > MAX_LISTED_USERS) {
      throw new InvalidInputError("user_ids", `must name 1 to ${MAX_LISTED_USERS} users`);
    }
    const userIds = [...new Set(req.userIds.map((id, i) => requireUserId(`user_ids[${i}]`, id)))];
    const rows = await devices.listDevices(this.#db, userIds, { includeRevoked: req.includeRevoked });
    const mine = await devices.countUnclaimedPrekeys(this.#db, rows.filter((r) => r.user_id === userId && r.revoked_at === null).map((r) => r.id));
    const order = new Map(userIds.map((id, i) => [id, i]));
    rows.sort((a, b) => order.get(a.user_id)! - order.get(b.user_id)!); // stable: oldest device first within a user
    return create(ListDevicesResponseSchema, { devices: rows.map((row) => toDevice(row, mine.get(row.id) ?? 0)) });
  }

  async uploadPrekeys(req: UploadPrekeysRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const deviceId = requireUuid("device_id", req.deviceId);
    if (req.prekeys.length === 0) throw new InvalidInputError("prekeys", "must hold at least one prekey");
    const device = await this.#ownActiveDevice(this.#db, deviceId, userId);
    const prekeys = checkPrekeys("prekeys", req.prekeys, device.signing_public_key);
    const unclaimed = await this.#db.transaction().execute(async (tx) => {
      if (!(await devices.insertPrekeys(tx, deviceId, prekeys))) throw duplicatePrekey();
      return (await devices.countUnclaimedPrekeys(tx, [deviceId])).get(deviceId) ?? 0;
    });
    return create(UploadPrekeysResponseSchema, { unclaimedPrekeys: unclaimed });
  }

  async claimPrekeys(req: ClaimPrekeysRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (req.deviceIds.length === 0 || req.deviceIds.length > MAX_BATCH) throw new InvalidInputError("device_ids", `must name 1 to ${MAX_BATCH} devices`);
    const deviceIds = req.deviceIds.map((id, i) => requireUuid(`device_ids[${i}]`, id));
    // Only devices the caller could send to: a stranger cannot drain anyone's prekeys.
    const reachable = await this.#reachableDevices(this.#db, userId, deviceIds);
    const claimed = new Map((await devices.claimPrekeys(this.#db, [...reachable.keys()])).map((row) => [row.device_id, toPrekey(row)]));
    return create(ClaimPrekeysResponseSchema, {
      // A device named twice gets its prekey once: handing out two would waste one.
      claimed: deviceIds.map((deviceId, i) =>
        create(ClaimedPrekeySchema, { deviceId, prekey: deviceIds.indexOf(deviceId) === i ? claimed.get(deviceId) : undefined }),
      ),
    });
  }

  async revokeDevice(req: RevokeDeviceRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const deviceId = requireUuid("device_id", req.deviceId);
    await this.#write(async (tx, recorded) => {
      const device = await devices.findDevice(tx, deviceId);
      if (!device) throw new NotFoundError("device");
      if (device.user_id !== userId) throw new PermissionDeniedError("only the owner can revoke a device", "NOT_OWNER");
      if (!(await devices.revokeDevice(tx, deviceId))) return;
      await inbox.emptyInbox(tx, deviceId);
      // What is sent from now on must not be readable with a key the revoked device holds.
      recorded.push(...deviceChanged(userId, deviceId, true, await advanceKeyEpochsOf(tx, userId)));
    });
    return create(RevokeDeviceResponseSchema, {});
  }

  async sendToDevice(req: SendToDeviceRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const senderDeviceId = requireUuid("sender_device_id", req.senderDeviceId);
    if (req.messages.length === 0 || req.messages.length > MAX_BATCH) throw new InvalidInputError("messages", `must hold 1 to ${MAX_BATCH} messages`);
    const outgoing = req.messages.map((m, i) => {
      const field = `messages[${i}]`;
      const recipientDeviceId = requireUuid(`${field}.recipient_device_id`, m.recipientDeviceId);
      if (m.ciphertext.length === 0 || m.ciphertext.length > MAX_TO_DEVICE_CIPHERTEXT) {
        throw new InvalidInputError(`${field}.ciphertext`, `must be 1 to ${MAX_TO_DEVICE_CIPHERTEXT} bytes`);
      }
      if (m.nonce.length > MAX_NONCE_BYTES) throw new InvalidInputError(`${field}.nonce`, `is longer than ${MAX_NONCE_BYTES} bytes`);
      if (m.algorithm === "" || m.algorithm.length > MAX_ALGORITHM_CHARS) {
        throw new InvalidInputError(`${field}.algorithm`, `must be 1 to ${MAX_ALGORITHM_CHARS} characters`);
      }
      return { ...m, recipientDeviceId };
    });
    await this.#ownActiveDevice(this.#db, senderDeviceId, userId);

    const stored = await this.#write(async (tx, recorded) => {
      // Checked in the transaction that writes, the devices locked: a revocation either waits
      // for this (and empties the inbox after) or committed before (and the device is gone).
      const recipients = await this.#reachableDevices(tx, userId, outgoing.map((m) => m.recipientDeviceId), true);
      const unreachable = outgoing.findIndex((m) => !recipients.has(m.recipientDeviceId));
      // Unknown, revoked and strangers' devices look alike: the caller learns nothing of them.
      if (unreachable >= 0) throw new NotFoundError(`device of messages[${unreachable}]`);
      const rows = await inbox.insertToDeviceMessages(
        tx,
        outgoing.map((m) => ({
          id: newId(),
          recipientDeviceId: m.recipientDeviceId,
          recipientUserId: recipients.get(m.recipientDeviceId)!,
          senderUserId: userId,
          senderDeviceId,
          ciphertext: m.ciphertext,
          nonce: m.nonce,
          algorithm: m.algorithm,
          prekeyId: m.prekeyId,
        })),
      );
      recorded.push(...rows.map((row) => toDeviceMessageReceived(row.recipient_user_id, toToDeviceMessage(row))));
      return rows;
    });
    return create(SendToDeviceResponseSchema, { messageIds: stored.map((row) => row.id) });
  }

  async listToDeviceMessages(req: ListToDeviceMessagesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const deviceId = requireUuid("device_id", req.deviceId);
    const limit = pageSize(req.pageSize, DEFAULT_INBOX_PAGE, MAX_INBOX_PAGE);
    let after: string | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("inbox", req.pageToken, ["d", "n"] as const);
      if (token.d !== deviceId) throw new InvalidInputError("page_token", "belongs to another device");
      after = requireInt8Digits("page_token", String(token.n));
    }
    await this.#ownDevice(this.#db, deviceId, userId);
    const rows = await inbox.listToDeviceMessages(this.#db, deviceId, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListToDeviceMessagesResponseSchema, {
      messages: page.map(toToDeviceMessage),
      nextPageToken: rows.length > limit && last ? encodePageToken("inbox", { d: deviceId, n: last.n }) : "",
    });
  }

  async ackToDeviceMessages(req: AckToDeviceMessagesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const deviceId = requireUuid("device_id", req.deviceId);
    if (req.messageIds.length === 0 || req.messageIds.length > MAX_BATCH) throw new InvalidInputError("message_ids", `must name 1 to ${MAX_BATCH} messages`);
    const ids = req.messageIds.map((id, i) => requireUuid(`message_ids[${i}]`, id));
    await this.#ownDevice(this.#db, deviceId, userId);
    return create(AckToDeviceMessagesResponseSchema, { deleted: await inbox.deleteToDeviceMessages(this.#db, deviceId, ids) });
  }

  /**
   * Of these device ids, the active devices whose users share a conversation with the caller
   * (the caller's own included), with their owners.
   */
  async #reachableDevices(db: Kysely<Database> | Transaction<Database>, userId: string, deviceIds: readonly string[], lock = false): Promise<Map<string, string>> {
    const active = await devices.listActiveDevicesById(db, [...new Set(deviceIds)], lock);
    const reachableUsers = await devices.findUsersSharingAConversation(db, userId, [...new Set(active.map((d) => d.user_id))]);
    return new Map(active.filter((d) => reachableUsers.has(d.user_id)).map((d) => [d.id, d.user_id]));
  }

  /** A registration of a key already in the directory: the same device again, or a conflict. */
  async #answerRepeatedRegistration(device: devices.DeviceRow, userId: string) {
    if (device.user_id !== userId) throw new AlreadyExistsError("this signing key belongs to another user's device", "SIGNING_KEY_TAKEN");
    if (device.revoked_at) throw new FailedPreconditionError("this device was revoked; register new keys", "DEVICE_REVOKED");
    const unclaimed = (await devices.countUnclaimedPrekeys(this.#db, [device.id])).get(device.id) ?? 0;
    return create(RegisterDeviceResponseSchema, { device: toDevice(device, unclaimed), created: false });
  }

  async #ownDevice(db: Kysely<Database> | Transaction<Database>, deviceId: string, userId: string) {
    const device = await devices.findDevice(db, deviceId);
    if (!device) throw new NotFoundError("device");
    if (device.user_id !== userId) throw new PermissionDeniedError("the device belongs to another user", "NOT_OWNER");
    return device;
  }

  async #ownActiveDevice(db: Kysely<Database> | Transaction<Database>, deviceId: string, userId: string) {
    const device = await this.#ownDevice(db, deviceId, userId);
    if (device.revoked_at) throw new FailedPreconditionError("the device was revoked", "DEVICE_REVOKED");
    return device;
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#db, this.#events, work);
  }
}

function requireBytes(field: string, value: Uint8Array, length: number): void {
  if (value.length !== length) throw new InvalidInputError(field, `must be ${length} bytes, not ${value.length}`);
}

/** Checks each prekey's key size and signature, and that the call names no key twice. */
function checkPrekeys(field: string, prekeys: readonly Prekey[], signingPublicKey: Uint8Array): devices.NewPrekey[] {
  if (prekeys.length > MAX_PREKEYS_PER_CALL) throw new InvalidInputError(field, `must hold at most ${MAX_PREKEYS_PER_CALL} prekeys`);
  const ids = new Set<number>();
  const keys = new Set<string>();
  return prekeys.map((p, i) => {
    requireBytes(`${field}[${i}].public_key`, p.publicKey, BOX_KEY_BYTES);
    requireBytes(`${field}[${i}].signature`, p.signature, SIGNATURE_BYTES);
    if (p.keyId === 0) throw new InvalidInputError(`${field}[${i}].key_id`, "must not be 0 (0 means no prekey)");
    if (!verifiesDetached(p.publicKey, p.signature, signingPublicKey)) {
      throw new InvalidInputError(`${field}[${i}].signature`, "does not verify with the device's signing key");
    }
    const key = Buffer.from(p.publicKey).toString("base64");
    if (ids.has(p.keyId) || keys.has(key)) throw duplicatePrekey();
    ids.add(p.keyId);
    keys.add(key);
    return { keyId: p.keyId, publicKey: p.publicKey, signature: p.signature };
  });
}

function duplicatePrekey(): AlreadyExistsError {
  return new AlreadyExistsError("a prekey id or key was already uploaded for this device; prekeys are single-use", "PREKEY_REUSED");
}
