/**
 * THE single place the chat CLI creates its MessageCodec (the end-to-end encryption layer).
 *
 * The E2E layer (src/client/e2e) is written in parallel and did not exist when the CLI was;
 * until it does, this returns undefined: plain conversations work fully, encrypted ones are
 * refused with a clear message. Wiring it in means replacing the body of createChatCodec (and
 * registerChatDevice) with the factory src/client/e2e/index.ts exports; nothing else changes.
 */
import type { Transport } from "@connectrpc/connect";
import type { MessageCodec } from "../client/codec.ts";
import type { TokenProvider } from "../client/bearer-transport.ts";
import type { ClientStore } from "../client/storage.ts";

/** What a codec needs: the device's store (its keys live there too) and a way to the server. */
export interface ChatCodecOptions {
  store: ClientStore;
  transport: Transport;
  token: TokenProvider;
  userId: string;
}

/** The codec for this device, or undefined while the E2E layer is not wired in. */
export async function createChatCodec(options: ChatCodecOptions): Promise<MessageCodec | undefined> {
  void options;
  return undefined;
}

/**
 * Registers this device's keys with the key directory. Returns a line for the user, or
 * undefined when there is no E2E layer yet to register with.
 */
export async function registerChatDevice(options: ChatCodecOptions): Promise<string | undefined> {
  void options;
  return undefined;
}
