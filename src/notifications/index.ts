export { NotificationService } from "./notification-service.ts";
export { createInProcessPushOutbox, createJetStreamPushOutbox, type PushOutbox } from "./push-outbox.ts";
