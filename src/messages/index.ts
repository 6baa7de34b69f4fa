export { MessageService } from "./message-service.ts";
export { SendBatcher, type SendBatcherOptions, type SendCommand } from "./send-batcher.ts";
export { eraseMessageAsOperator } from "./message-lifecycle.ts";
export { findMessage } from "./message-repository.ts";
