/**
 * The Parley client SDK. Browser-safe: nothing here imports node: modules (the Node file store
 * is in ./node/index.ts).
 */
export { ParleyClient } from "./parley-client.ts";
export { Attachments } from "./attachments.ts";
export type { ParleyClientOptions, CreateConversationOptions, SendOptions } from "./parley-client.ts";
export { CodecRefusedError, type MessageCodec } from "./codec.ts";
export type { ClientStore } from "./storage.ts";
export { MemoryStore } from "./storage.ts";
export type { TokenProvider } from "./bearer-transport.ts";
export { withBearerToken } from "./bearer-transport.ts";
export type { ClientEvent, ClientEventListener } from "./client-events.ts";
export type { DecodedMessage } from "./message-decoder.ts";
export { SendFailedError } from "./outbox.ts";
export type { PendingSend } from "./outbox.ts";
export type { OutboxItem, OutboxDraft } from "./outbox-store.ts";
export type { SearchFilters, SearchResult } from "./search.ts";
export type { BackoffOptions } from "./backoff.ts";
export { OrderingBuffer } from "./ordering-buffer.ts";
export { accountRestrictionOf, classifyFailure, STALE_KEY_EPOCH } from "./rpc-errors.ts";
export type { FailureKind } from "./rpc-errors.ts";
