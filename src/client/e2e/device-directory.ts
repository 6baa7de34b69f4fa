/**
 * Users' devices, from KeyService.ListDevices, cached per user until an event says the list
 * changed. Only devices whose box key their signing key vouches for get in: a payload is
 * never sealed to, or trusted from, a box key the directory could have swapped.
 *
 * The directory lists only devices not revoked, but history outlives a device: every device
 * record this client verified is also kept in the store, so messages a device sent before it
 * was revoked still open. Nothing new ever goes to a device that is not listed now: senders
 * use devicesOf and findDevice, which read the listing only.
 */
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { DeviceSchema, type Device } from "../../../gen/parley/v1/device_pb.ts";
import type { ClientStore } from "../storage.ts";
import { compareBytes, verifyDeviceBoxKey } from "../crypto/index.ts";
import type { KeyServiceClient } from "./services.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

/** ListDevices takes at most this many users per call. */
const USERS_PER_CALL = 500;

/** A device record as verified once, kept for good. */
interface KnownDeviceRecord {
  readonly deviceId: string;
  readonly userId: string;
  readonly signingPublicKey: Uint8Array;
  readonly boxPublicKey: Uint8Array;
  readonly boxKeySignature: Uint8Array;
}

/** A device found for reading what it sent: listed now, or only remembered. */
export interface KnownDevice {
  readonly device: Device;
  /** False when the directory no longer lists it (revoked). */
  readonly listed: boolean;
}

export class DeviceDirectory {
  readonly #keyService: KeyServiceClient;
  readonly #store: ClientStore;
  readonly #devicesByUser = new Map<string, Device[]>();
  /**
   * Devices verified in this run, by id, with the signature that was checked: a device listed
   * again with the same keys (every new epoch refetches members' devices) is not verified again.
   */
  readonly #verified = new Map<string, Device>();

  readonly #onError: (error: unknown) => void;

  /** `onError` hears of listings refused because a device id came back with other keys. */
  constructor(keyService: KeyServiceClient, store: ClientStore, onError: (error: unknown) => void = () => undefined) {
    this.#keyService = keyService;
    this.#store = store;
    this.#onError = onError;
  }

  /** The verified, listed devices of the users, fetching those not cached. */
  async devicesOf(userIds: readonly string[]): Promise<Device[]> {
    const missing = [...new Set(userIds)].filter((userId) => !this.#devicesByUser.has(userId));
    for (let start = 0; start < missing.length; start += USERS_PER_CALL) {
      const batch = missing.slice(start, start + USERS_PER_CALL);
      const { devices } = await this.#keyService.listDevices({ userIds: batch });
      const verified = await Promise.all(devices.map(async (device) => ((await this.#verify(device)) ? device : undefined)));
      for (const userId of batch) this.#devicesByUser.set(userId, []);
      for (const device of verified) {
        if (device === undefined || !(await this.#matchesKept(device))) continue;
        this.#devicesByUser.get(device.userId)?.push(device);
        await this.#remember(device);
      }
    }
    return [...new Set(userIds)].flatMap((userId) => this.#devicesByUser.get(userId) ?? []);
  }

  /** One user's listed device; a miss refetches that user once, as it may be newer than the cache. */
  async findDevice(userId: string, deviceId: string): Promise<Device | undefined> {
    const cached = (await this.devicesOf([userId])).find((device) => device.deviceId === deviceId);
    if (cached !== undefined) return cached;
    this.invalidate(userId);
    return (await this.devicesOf([userId])).find((device) => device.deviceId === deviceId);
  }

  /**
   * A device to read a message from: listed now, or else the record this client verified
   * while it was listed (it was revoked since). Only for opening what it sent.
   */
  async knownDevice(userId: string, deviceId: string): Promise<KnownDevice | undefined> {
    const listed = await this.findDevice(userId, deviceId);
    if (listed !== undefined) return { device: listed, listed: true };
    const bytes = await this.#store.get(storeKeys.knownDevice(deviceId));
    if (bytes === undefined) return undefined;
    const record = decodeRecord<KnownDeviceRecord>(bytes);
    return record.userId === userId ? { device: create(DeviceSchema, record), listed: false } : undefined;
  }

  /**
   * When a device that is no longer listed was revoked (server time, ms), asked of the
   * directory once and kept; undefined when the directory does not say.
   */
  async revokedAtMs(userId: string, deviceId: string): Promise<number | undefined> {
    const key = storeKeys.deviceRevokedAt(deviceId);
    const kept = await this.#store.get(key);
    if (kept !== undefined) return decodeRecord<number>(kept);
    const { devices } = await this.#keyService.listDevices({ userIds: [userId], includeRevoked: true });
    const revokedAt = devices.find((device) => device.deviceId === deviceId && device.userId === userId)?.revokedAt;
    if (revokedAt === undefined) return undefined;
    const ms = timestampMs(revokedAt);
    await this.#store.put(key, encodeRecord(ms));
    return ms;
  }

  /** Notes the epoch a conversation moved to when the device was revoked (a device_changed event). */
  async recordRevocation(deviceId: string, conversationId: string, keyEpoch: number): Promise<void> {
    await this.#store.put(storeKeys.deviceRevocation(deviceId, conversationId), encodeRecord(keyEpoch));
  }

  /** The first epoch of the conversation the device can no longer send in, if this client heard of its revocation. */
  async revokedAtEpoch(deviceId: string, conversationId: string): Promise<number | undefined> {
    const bytes = await this.#store.get(storeKeys.deviceRevocation(deviceId, conversationId));
    return bytes === undefined ? undefined : decodeRecord<number>(bytes);
  }

  /** Forgets a user's listed devices (a device_changed or member_added event). */
  invalidate(userId: string): void {
    this.#devicesByUser.delete(userId);
  }

  /** Whether the device's signing key vouches for its box key (checked once per set of keys). */
  async #verify(device: Device): Promise<boolean> {
    const seen = this.#verified.get(device.deviceId);
    if (seen !== undefined && sameKeys(seen, device)) return true;
    return verifyDeviceBoxKey(device);
  }

  /**
   * A device id is bound to the keys it was first verified with: a listing of the same id with
   * other keys (or another owner) is a directory swapping keys under a known device, and the
   * device is left out (and reported) rather than trusted.
   */
  async #matchesKept(device: Device): Promise<boolean> {
    let kept: KnownDeviceRecord | undefined = this.#verified.get(device.deviceId);
    if (kept === undefined) {
      const bytes = await this.#store.get(storeKeys.knownDevice(device.deviceId));
      kept = bytes === undefined ? undefined : decodeRecord<KnownDeviceRecord>(bytes);
    }
    if (kept === undefined || (kept.userId === device.userId && sameKeys(kept, device))) return true;
    this.#onError(new Error(`the directory lists device ${device.deviceId} of user ${device.userId} with keys other than those first verified; it is left out`));
    return false;
  }

  /** Keeps a verified device's record; the first verified record of an id stays. */
  async #remember(device: Device): Promise<void> {
    if (this.#verified.has(device.deviceId)) return;
    const key = storeKeys.knownDevice(device.deviceId);
    if ((await this.#store.get(key)) === undefined) {
      const record: KnownDeviceRecord = {
        deviceId: device.deviceId,
        userId: device.userId,
        signingPublicKey: device.signingPublicKey,
        boxPublicKey: device.boxPublicKey,
        boxKeySignature: device.boxKeySignature,
      };
      await this.#store.put(key, encodeRecord(record));
    }
    this.#verified.set(device.deviceId, device);
  }
}

function sameKeys(a: KnownDeviceRecord, b: KnownDeviceRecord): boolean {
  return (
    compareBytes(a.signingPublicKey, b.signingPublicKey) === 0 &&
    compareBytes(a.boxPublicKey, b.boxPublicKey) === 0 &&
    compareBytes(a.boxKeySignature, b.boxKeySignature) === 0
  );
}
