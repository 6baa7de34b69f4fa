/** Background work: durable consumers on JetStream, or in-process in embedded mode. */
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import type { EventBus } from "../log/event-bus.ts";
import type { Subjects } from "../log/subjects.ts";
import type { WorkerRuntime } from "./consumer.ts";
import { createInProcessRuntime } from "./in-process-runtime.ts";
import { createJetStreamRuntime } from "./jetstream-runtime.ts";

export type { Consumer, ConsumerSpec, Delivered, Outcome, WorkerRuntime } from "./consumer.ts";
export { decodeStoredEvent } from "../log/event-wire.ts";
export { failureBackoffMs } from "./batch-runner.ts";

export interface WorkerRuntimeOptions {
  /** The NATS connection, or null in embedded mode. */
  nats: NatsConnection | null;
  subjects: Subjects;
  bus: EventBus;
  logger: Logger;
}

export function createWorkerRuntime({ nats, subjects, bus, logger }: WorkerRuntimeOptions): WorkerRuntime {
  return nats ? createJetStreamRuntime({ connection: nats, subjects, logger }) : createInProcessRuntime({ bus, subjects, logger });
}
