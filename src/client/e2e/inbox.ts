/**
 * The device's to-device inbox: each payload is opened with the prekey (or box key) it was
 * sealed to, trusted only if its sender device's box key verifies in the directory, handed to
 * the key manager, and acknowledged. A used prekey's secret is deleted once the payload was
 * opened, even if handling it then fails: a prekey opens one payload once (forward secrecy),
 * and a payload lost that way is a key the device can ask for again. Only a device listed now
 * is trusted as a sender: a payload from one revoked since (sent before, processed after) is
 * dropped, so it can install no key for later epochs. Payloads that can never be handled (a
 * DecryptError, or a call the server refused for good, such as NOT_FOUND for a conversation
 * the user left) are acknowledged too, so they do not block the inbox; anything else (the
 * network failing mid-way) is left for the next drain. The feed also announces messages a
 * drain lists (and replays those events after a reconnect): ids finished with in this run are
 * remembered, boundedly, and not processed twice (a key request would be answered twice, a
 * prekey-sealed payload would fail on its deleted prekey).
 */
import type { ToDevicePayload } from "../../../gen/parley/e2e/v1/payload_pb.ts";
import type { Device, ToDeviceMessage } from "../../../gen/parley/v1/device_pb.ts";
import { DecryptError, openToDevice } from "../crypto/index.ts";
import { classifyFailure } from "../rpc-errors.ts";
import type { DeviceDirectory } from "./device-directory.ts";
import type { LocalDevice } from "./device-identity.ts";
import type { PrekeyPool } from "./prekey-pool.ts";
import type { KeyServiceClient } from "./services.ts";

const INBOX_PAGE_SIZE = 100;
/** How many finished message ids a run remembers; the oldest are forgotten first. */
const MAX_REMEMBERED_IDS = 5000;

export interface InboxOptions {
  readonly keyService: KeyServiceClient;
  readonly local: LocalDevice;
  readonly devices: DeviceDirectory;
  readonly prekeys: PrekeyPool;
  /** Acts on an opened payload from a verified sender device. */
  readonly handle: (payload: ToDevicePayload, sender: Device) => Promise<void>;
  /** Hears of payloads dropped or left for later. */
  readonly onError: (error: unknown) => void;
}

export class Inbox {
  readonly #options: InboxOptions;
  /** Ids of messages finished with in this run, oldest first. */
  readonly #finished = new Set<string>();

  constructor(options: InboxOptions) {
    this.#options = options;
  }

  /** Processes everything waiting, page by page, then tops prekeys up if any were used. */
  async drain(): Promise<void> {
    const { keyService, local } = this.#options;
    let usedPrekey = false;
    let pageToken = "";
    do {
      const page = await keyService.listToDeviceMessages({ deviceId: local.deviceId, pageSize: INBOX_PAGE_SIZE, pageToken });
      const done: string[] = [];
      for (const message of page.messages) {
        if (await this.#process(message)) done.push(message.id);
        usedPrekey ||= message.prekeyId !== 0;
      }
      if (done.length > 0) await keyService.ackToDeviceMessages({ deviceId: local.deviceId, messageIds: done });
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    if (usedPrekey) await this.#options.prekeys.topUp(keyService, local.deviceId, local.userId);
  }

  /** Processes one message announced by an event (the owner's other devices' are not ours). */
  async receive(message: ToDeviceMessage): Promise<void> {
    const { keyService, local, prekeys } = this.#options;
    if (message.recipientDeviceId !== local.deviceId) return;
    if (!(await this.#process(message))) return;
    await keyService.ackToDeviceMessages({ deviceId: local.deviceId, messageIds: [message.id] });
    if (message.prekeyId !== 0) await prekeys.topUp(keyService, local.deviceId, local.userId);
  }

  /** True when the message is finished with (handled, or never going to open). */
  async #process(message: ToDeviceMessage): Promise<boolean> {
    if (this.#finished.has(message.id)) return true;
    const finished = await this.#handleOnce(message);
    if (finished) {
      this.#finished.add(message.id);
      if (this.#finished.size > MAX_REMEMBERED_IDS) this.#finished.delete(this.#finished.values().next().value as string);
    }
    return finished;
  }

  async #handleOnce(message: ToDeviceMessage): Promise<boolean> {
    try {
      const { payload, sender } = await this.#open(message);
      try {
        await this.#options.handle(payload, sender);
      } finally {
        if (message.prekeyId !== 0) await this.#options.prekeys.discard(message.prekeyId);
      }
      return true;
    } catch (error) {
      this.#options.onError(error);
      return error instanceof DecryptError || classifyFailure(error) === "permanent";
    }
  }

  async #open(message: ToDeviceMessage): Promise<{ payload: ToDevicePayload; sender: Device }> {
    const { devices, local, prekeys } = this.#options;
    const sender = await devices.findDevice(message.senderUserId, message.senderDeviceId);
    if (sender === undefined) throw new DecryptError("unknown_key", "the sending device is not in the directory (revoked, or never registered)");
    const secretKey = message.prekeyId === 0 ? local.keys.box.secretKey : await prekeys.secretKey(message.prekeyId);
    if (secretKey === undefined) throw new DecryptError("unknown_key", `prekey ${message.prekeyId} was already used or never made`);
    return { payload: await openToDevice(message, sender.boxPublicKey, secretKey), sender };
  }
}
