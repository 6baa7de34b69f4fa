/** The SDK's end-to-end encryption: the key manager behind the MessageCodec seam. */
export { E2EKeyManager, type KeyManagerOptions } from "./key-manager.ts";
export { PREKEY_BATCH, PREKEY_LOW_WATER } from "./prekey-pool.ts";
export { DecryptError, type DecryptErrorReason } from "../crypto/index.ts";
export type { MessageCodec } from "../codec.ts";
