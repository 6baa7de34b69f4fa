/**
 * This device's identity: its keys, made once and kept in the store, and the id the
 * directory gave it. Keys are stored before registering, so a crash between the two is
 * healed by registering again: the directory answers a known signing key with the device it
 * already has.
 */
import { getText, putText, type ClientStore } from "../storage.ts";
import { createDeviceKeys, deserializeDeviceKeys, serializeDeviceKeys, type DeviceKeys } from "../crypto/index.ts";
import { PREKEY_BATCH, type PrekeyPool } from "./prekey-pool.ts";
import type { KeyServiceClient } from "./services.ts";
import { storeKeys } from "./store-keys.ts";

/** This device as the key manager uses it. */
export interface LocalDevice {
  readonly userId: string;
  readonly deviceId: string;
  readonly keys: DeviceKeys;
}

/** The device's keys from the store, made and stored first if there are none. */
export async function loadOrCreateDeviceKeys(store: ClientStore): Promise<DeviceKeys> {
  const stored = await store.get(storeKeys.deviceKeys);
  if (stored !== undefined) return deserializeDeviceKeys(stored);
  const keys = createDeviceKeys();
  await store.put(storeKeys.deviceKeys, serializeDeviceKeys(keys));
  return keys;
}

/** The device's directory id, registering the device (with a first batch of prekeys) if needed. */
export async function loadOrRegisterDeviceId(
  store: ClientStore,
  keyService: KeyServiceClient,
  keys: DeviceKeys,
  prekeys: PrekeyPool,
  displayName: string,
): Promise<string> {
  const stored = await getText(store, storeKeys.deviceId);
  if (stored !== undefined) return stored;
  const { device } = await keyService.registerDevice({
    signingPublicKey: keys.signing.publicKey,
    boxPublicKey: keys.box.publicKey,
    boxKeySignature: keys.boxKeySignature,
    displayName,
    prekeys: await prekeys.create(PREKEY_BATCH),
  });
  if (device === undefined) throw new Error("RegisterDevice answered without a device");
  await putText(store, storeKeys.deviceId, device.deviceId);
  return device.deviceId;
}
