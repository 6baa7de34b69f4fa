/**
 * Other users' devices, from KeyService.ListDevices, cached per user until an event says the
 * list changed. Only devices whose box key their signing key vouches for get in: a payload is
 * never sealed to, or trusted from, a box key the directory could have swapped.
 */
import type { Device } from "../../../gen/parley/v1/device_pb.ts";
import { verifyDeviceBoxKey } from "../crypto/index.ts";
import type { KeyServiceClient } from "./services.ts";

/** ListDevices takes at most this many users per call. */
const USERS_PER_CALL = 500;

export class DeviceDirectory {
  readonly #keyService: KeyServiceClient;
  readonly #devicesByUser = new Map<string, Device[]>();

  constructor(keyService: KeyServiceClient) {
    this.#keyService = keyService;
  }

  /** The verified devices of the users, fetching those not cached. */
  async devicesOf(userIds: readonly string[]): Promise<Device[]> {
    const missing = [...new Set(userIds)].filter((userId) => !this.#devicesByUser.has(userId));
    for (let start = 0; start < missing.length; start += USERS_PER_CALL) {
      const batch = missing.slice(start, start + USERS_PER_CALL);
      const { devices } = await this.#keyService.listDevices({ userIds: batch });
      for (const userId of batch) this.#devicesByUser.set(userId, []);
      for (const device of devices.filter(verifyDeviceBoxKey)) this.#devicesByUser.get(device.userId)?.push(device);
    }
    return [...new Set(userIds)].flatMap((userId) => this.#devicesByUser.get(userId) ?? []);
  }

  /** One user's device; a miss refetches that user once, as it may be newer than the cache. */
  async findDevice(userId: string, deviceId: string): Promise<Device | undefined> {
    const cached = (await this.devicesOf([userId])).find((device) => device.deviceId === deviceId);
    if (cached !== undefined) return cached;
    this.invalidate(userId);
    return (await this.devicesOf([userId])).find((device) => device.deviceId === deviceId);
  }

  /** Forgets a user's devices (a device_changed or member_added event). */
  invalidate(userId: string): void {
    this.#devicesByUser.delete(userId);
  }
}
