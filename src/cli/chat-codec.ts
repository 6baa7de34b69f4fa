/**
 * The chat CLI's end-to-end encryption: the SDK's key manager on the CLI's store, so the
 * device's keys live under --home beside its outbox and cursor (two homes are two devices).
 */
import { hostname } from "node:os";
import type { Transport } from "@connectrpc/connect";
import { withBearerToken, type TokenProvider } from "../client/bearer-transport.ts";
import { E2EKeyManager } from "../client/e2e/index.ts";
import type { ClientStore } from "../client/storage.ts";

/** What the codec needs: the device's store and a way to the server as the user. */
export interface ChatCodecOptions {
  store: ClientStore;
  transport: Transport;
  token: TokenProvider;
  userId: string;
}

/** Opens this home's device: registers it (keys made and stored first) on the first run. */
export function createChatCodec(options: ChatCodecOptions): Promise<E2EKeyManager> {
  return E2EKeyManager.open({
    store: options.store,
    transport: withBearerToken(options.transport, options.token),
    userId: options.userId,
    deviceName: `parley chat on ${hostname()}`,
    onError: (error) => console.error(`-- key material dropped: ${error instanceof Error ? error.message : String(error)} --`),
  });
}

/** A line saying which device this home is, with its identity key's fingerprint. */
export function describeDevice(codec: E2EKeyManager): string {
  const fingerprint = Buffer.from(codec.signingPublicKey).toString("hex").match(/.{4}/g)!.slice(0, 8).join(" ");
  return `device ${codec.deviceId} (identity key ${fingerprint} …)`;
}
