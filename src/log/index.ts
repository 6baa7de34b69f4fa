export { createSubjects, subjectToken, type Subjects } from "./subjects.ts";
export { appendEvents, rewriteUserEvents, unrouteUserEvents, type EventLogLayout, type NewEvent, type StoredEvent } from "./event-log.ts";
export { openEventLog } from "./log-layout.ts";
export type { EventBus, EphemeralRoute } from "./event-bus.ts";
export { createInProcessBus } from "./in-process-bus.ts";
export { createNatsBus } from "./nats-bus.ts";
export { provisionNats } from "./provision.ts";
export { createEventPublisher, writeWithEvents, type EventPublisher, type PublishFaults } from "./event-publisher.ts";
export { createOutboxRelay, type OutboxRelay } from "./outbox-relay.ts";
