/**
 * The device's one-time prekeys: secrets kept until a payload sealed to one arrives, and ids
 * from a counter that only goes up (the directory refuses an id the device ever used). The
 * counter and the secrets are stored before anything is uploaded, so a crash mid-upload at
 * worst leaves unused secrets behind, never an uploaded prekey the device cannot open.
 */
import { create } from "@bufbuild/protobuf";
import { PrekeySchema, type Prekey } from "../../../gen/parley/v1/device_pb.ts";
import type { ClientStore } from "../storage.ts";
import { createPrekey, forgetSecretKey } from "../crypto/index.ts";
import type { KeyServiceClient } from "./services.ts";
import { decodeRecord, encodeRecord } from "./stored-record.ts";
import { storeKeys } from "./store-keys.ts";

/** Below this many unclaimed prekeys the device uploads more. */
export const PREKEY_LOW_WATER = 50;
/** How many a top-up (and the registration) uploads: the directory's per-call maximum. */
export const PREKEY_BATCH = 100;

export class PrekeyPool {
  readonly #store: ClientStore;
  readonly #signingSecretKey: Uint8Array;

  constructor(store: ClientStore, signingSecretKey: Uint8Array) {
    this.#store = store;
    this.#signingSecretKey = signingSecretKey;
  }

  /** Makes and stores count fresh prekeys; returns their public halves for upload. */
  async create(count: number): Promise<Prekey[]> {
    const stored = await this.#store.get(storeKeys.nextPrekeyId);
    const firstId = stored === undefined ? 1 : decodeRecord<number>(stored);
    await this.#store.put(storeKeys.nextPrekeyId, encodeRecord(firstId + count));
    const prekeys: Prekey[] = [];
    for (let keyId = firstId; keyId < firstId + count; keyId++) {
      const prekey = await createPrekey(keyId, this.#signingSecretKey);
      await this.#store.put(storeKeys.prekeySecret(keyId), prekey.secretKey);
      prekeys.push(create(PrekeySchema, { keyId, publicKey: prekey.publicKey, signature: prekey.signature }));
    }
    return prekeys;
  }

  /** The secret of a prekey the device still holds. */
  secretKey(keyId: number): Promise<Uint8Array | undefined> {
    return this.#store.get(storeKeys.prekeySecret(keyId));
  }

  /** Forgets a used prekey, so a later compromise of the device cannot open what used it. */
  async discard(keyId: number): Promise<void> {
    const secret = await this.secretKey(keyId);
    if (secret !== undefined) forgetSecretKey(secret);
    await this.#store.delete(storeKeys.prekeySecret(keyId));
  }

  /** Uploads a batch when the directory holds fewer than the low-water mark unclaimed. */
  async topUp(keyService: KeyServiceClient, deviceId: string, userId: string): Promise<void> {
    const { devices } = await keyService.listDevices({ userIds: [userId] });
    const device = devices.find((candidate) => candidate.deviceId === deviceId);
    if (device === undefined || device.unclaimedPrekeys >= PREKEY_LOW_WATER) return;
    await keyService.uploadPrekeys({ deviceId, prekeys: await this.create(PREKEY_BATCH) });
  }
}
