export { MessageService } from "./message-service.ts";
export { SendBatcher, type SendBatcherOptions, type SendCommand } from "./send-batcher.ts";
