/**
 * Embedded mode's consumers: every committed event of this process and every work item go to
 * the consumers whose filter matches; a retry is a timer. Nothing survives a restart, so each
 * consumer keeps its own way to reconcile (idempotent keys, the story sweep, reindex).
 */
import type { Logger } from "pino";
import type { EventBus } from "../log/event-bus.ts";
import { eventHeaders } from "../log/event-wire.ts";
import type { Subjects } from "../log/subjects.ts";
import { BatchQueue, type RawDelivery } from "./batch-runner.ts";
import type { Consumer, ConsumerSpec, WorkerRuntime } from "./consumer.ts";
import { subjectMatches } from "./subject-match.ts";

/** How many recent work ids are remembered to drop republished items, as JetStream would. */
const DEDUPE_MEMORY = 10_000;

export interface InProcessRuntimeOptions {
  bus: EventBus;
  subjects: Subjects;
  logger: Logger;
}

interface Registered {
  filter: string;
  queue: BatchQueue<unknown>;
  timers: Set<NodeJS.Timeout>;
  stopped: boolean;
}

export function createInProcessRuntime({ bus, subjects, logger }: InProcessRuntimeOptions): WorkerRuntime {
  const consumers = new Set<Registered>();
  const recentWork = new Set<string>();

  const deliver = (subject: string, data: Uint8Array, headers: ReadonlyMap<string, string>) => {
    for (const consumer of consumers) {
      if (subjectMatches(consumer.filter, subject)) consumer.queue.push(rawDelivery(consumer, subject, data, headers, 1));
    }
  };

  const rawDelivery = (consumer: Registered, subject: string, data: Uint8Array, headers: ReadonlyMap<string, string>, deliveryCount: number): RawDelivery => ({
    data,
    headers,
    subject,
    deliveryCount,
    ack: () => {},
    terminate: () => {},
    retry: (delayMs) => {
      if (consumer.stopped) return;
      const timer = setTimeout(() => {
        consumer.timers.delete(timer);
        if (!consumer.stopped) consumer.queue.push(rawDelivery(consumer, subject, data, headers, deliveryCount + 1));
      }, delayMs);
      timer.unref();
      consumer.timers.add(timer);
    },
  });

  const unsubscribe = bus.onEvent((stored) => deliver(subjects.event(stored), stored.payload, eventHeaders(stored)));

  const stop = async (consumer: Registered) => {
    consumer.stopped = true;
    consumers.delete(consumer);
    for (const timer of consumer.timers) clearTimeout(timer);
    await consumer.queue.idle();
  };

  return {
    async startConsumer<T>(spec: ConsumerSpec<T>): Promise<Consumer> {
      const consumer: Registered = {
        filter: spec.filterSubject,
        queue: new BatchQueue(spec, logger) as BatchQueue<unknown>,
        timers: new Set(),
        stopped: false,
      };
      consumers.add(consumer);
      return { stop: () => stop(consumer) };
    },
    async publishWork(subject, data, msgId) {
      if (recentWork.has(msgId)) return;
      recentWork.add(msgId);
      if (recentWork.size > DEDUPE_MEMORY) recentWork.delete(recentWork.values().next().value!);
      deliver(subject, data, new Map());
    },
    async close() {
      unsubscribe();
      await Promise.all([...consumers].map(stop));
    },
  };
}
