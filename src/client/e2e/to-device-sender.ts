/**
 * Sends key material to many devices at once: one ClaimPrekeys call for all of them, each
 * payload sealed to its device's claimed prekey (or box key when it had none left), and one
 * SendToDevice call. A group of a hundred devices costs two round trips, not two hundred.
 */
import type { ToDevicePayload } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import type { Device, Prekey } from "../../../gen/parley/v1/device_pb.ts";
import { sealToDevice, verifyPrekey } from "../crypto/index.ts";
import type { LocalDevice } from "./device-identity.ts";
import type { KeyServiceClient } from "./services.ts";

/** ClaimPrekeys and SendToDevice take at most this many devices per call. */
const DEVICES_PER_CALL = 1000;

/** One payload for one (directory-verified) device. */
export interface ToDeviceDelivery {
  readonly device: Device;
  readonly payload: ToDevicePayload;
}

export class ToDeviceSender {
  readonly #keyService: KeyServiceClient;
  readonly #local: LocalDevice;

  constructor(keyService: KeyServiceClient, local: LocalDevice) {
    this.#keyService = keyService;
    this.#local = local;
  }

  /** Seals and sends every delivery. */
  async send(deliveries: readonly ToDeviceDelivery[]): Promise<void> {
    for (let start = 0; start < deliveries.length; start += DEVICES_PER_CALL) {
      await this.#sendBatch(deliveries.slice(start, start + DEVICES_PER_CALL));
    }
  }

  async #sendBatch(deliveries: readonly ToDeviceDelivery[]): Promise<void> {
    if (deliveries.length === 0) return;
    const { claimed } = await this.#keyService.claimPrekeys({ deviceIds: deliveries.map(({ device }) => device.deviceId) });
    const prekeyByDevice = new Map(claimed.map((entry) => [entry.deviceId, entry.prekey]));
    // All at once: on WebCrypto the verifications and key agreements run in parallel.
    const messages = await Promise.all(
      deliveries.map(async ({ device, payload }) => {
        const sealed = await sealToDevice(payload, this.#local.keys.box.secretKey, {
          boxPublicKey: device.boxPublicKey,
          prekey: await trustedPrekey(prekeyByDevice.get(device.deviceId), device),
        });
        return { recipientDeviceId: device.deviceId, ...sealed };
      }),
    );
    await this.#keyService.sendToDevice({ senderDeviceId: this.#local.deviceId, messages });
  }
}

/** The claimed prekey if the device signed it; otherwise the payload goes to the box key. */
async function trustedPrekey(prekey: Prekey | undefined, device: Device): Promise<Prekey | undefined> {
  return prekey !== undefined && (await verifyPrekey(prekey, device.signingPublicKey)) ? prekey : undefined;
}
