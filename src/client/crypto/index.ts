/** The SDK's pure cryptography: no network, no storage, the same in Node and browsers. */
export { DecryptError, type DecryptErrorReason } from "./decrypt-error.ts";
export { compareBytes, fromHex, toHex } from "./bytes.ts";
export {
  createDeviceKeys,
  deserializeDeviceKeys,
  serializeDeviceKeys,
  verifyDeviceBoxKey,
  type DeviceKeys,
  type PublicDeviceKeys,
} from "./device-keys.ts";
export { createPrekey, verifyPrekey, type PrekeyPair, type PublicPrekey } from "./prekeys.ts";
export { TO_DEVICE_ALGORITHM, openToDevice, sealToDevice, type SealedToDevice, type ToDeviceRecipient } from "./to-device.ts";
export {
  DIRECT_ALGORITHM,
  openDirectBody,
  openDirectMessageKey,
  readDirectCiphertext,
  sealDirect,
  type KeyBoxRecipient,
  type SealDirectInput,
  type SealedDirect,
} from "./direct-envelope.ts";
export {
  MAX_SKIPPED_MESSAGE_KEYS,
  chainKeyAt,
  createSenderKey,
  mergeEarlierDistribution,
  messageKeyOf,
  nextChainKey,
  receiverChainFrom,
  takeMessageKey,
  type ReceiverChain,
  type SenderKey,
  type TakenMessageKey,
} from "./sender-key-chain.ts";
export { GROUP_ALGORITHM, openGroup, openGroupWithMessageKey, readGroupCiphertext, sealGroup, type OpenedGroup, type SealGroupInput, type SealedGroup } from "./group-envelope.ts";
export { hmacSha512 } from "./hmac-sha512.ts";
export {
  boxSharedKey,
  forgetSecretKey,
  primitivesBackend,
  setPrimitivesBackend,
  signDetached,
  verifyDetached,
  type PrimitivesBackend,
} from "./primitives.ts";
export {
  MAX_TOKENS_PER_MESSAGE,
  MAX_TOKENS_PER_QUERY,
  blindToken,
  blindTokens,
  createSearchKey,
  preferredSearchKey,
  searchWords,
} from "./blind-index.ts";
export { safetyNumber, type SafetyIdentity } from "./safety-number.ts";
export { ENCRYPTED_MEDIA_CONTENT_TYPE, decryptMedia, encryptMedia, type EncryptedMedia, type MediaDescription } from "./media.ts";
