/**
 * Every store key the key manager uses, in one place, so what a device keeps is easy to
 * audit and nothing collides with the session layer's keys (which live outside "e2e/").
 */

/** Ids come from the server; encoding keeps a "/" in one from splitting a key. */
function segment(id: string): string {
  return encodeURIComponent(id);
}

/** Zero-padded so that a store's key order is numeric order. */
function padded(value: number | bigint): string {
  return value.toString().padStart(12, "0");
}

export const storeKeys = {
  deviceKeys: "e2e/device/keys",
  deviceId: "e2e/device/id",
  nextPrekeyId: "e2e/prekeys/next-id",
  prekeySecret: (keyId: number) => `e2e/prekeys/secret/${padded(keyId)}`,
  outgoingKeys: (conversationId: string, epoch: number) => `e2e/outgoing/${segment(conversationId)}/${padded(epoch)}`,
  outgoingKeysOf: (conversationId: string) => `e2e/outgoing/${segment(conversationId)}/`,
  receivedChain: (senderDeviceId: string, senderKeyId: string) => `e2e/chains/${segment(senderDeviceId)}/${segment(senderKeyId)}`,
  openedGroupKey: (senderDeviceId: string, senderKeyId: string, index: number) =>
    `e2e/opened-group-keys/${segment(senderDeviceId)}/${segment(senderKeyId)}/${padded(index)}`,
  searchKey: (conversationId: string, epoch: number, keyHex: string) => `e2e/search-keys/${segment(conversationId)}/${padded(epoch)}/${keyHex}`,
  searchKeysOf: (conversationId: string) => `e2e/search-keys/${segment(conversationId)}/`,
  knownDevice: (deviceId: string) => `e2e/known-devices/${segment(deviceId)}`,
  deviceRevokedAt: (deviceId: string) => `e2e/device-revoked-at/${segment(deviceId)}`,
  deviceRevocation: (deviceId: string, conversationId: string) => `e2e/device-revocations/${segment(deviceId)}/${segment(conversationId)}`,
  sharedDirectKey: (conversationId: string, seq: bigint) => `e2e/shared-direct-keys/${segment(conversationId)}/${padded(seq)}`,
} as const;
