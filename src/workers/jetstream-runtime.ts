/**
 * Durable consumers on JetStream: one durable pull consumer per spec (shared by every node, so
 * each delivery goes to one node), explicit acks after the handler, naks with a delay for
 * retries and scheduling, terms for poison. Work items go to the WORK stream.
 */
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JsMsg, type NatsConnection } from "nats";
import type { Logger } from "pino";
import type { Subjects } from "../log/subjects.ts";
import { fromNatsHeaders } from "../log/nats-bus.ts";
import { BatchQueue, type RawDelivery } from "./batch-runner.ts";
import { DEFAULT_BATCH_SIZE, type Consumer, type ConsumerSpec, type WorkerRuntime } from "./consumer.ts";

const NANOS_PER_MS = 1_000_000;
/**
 * A delivery not settled within this time is redelivered (handlers are idempotent). It is also
 * how long the batch a dead node had in hand waits, so it is short: batches take well under a
 * second, and a slow one only risks a harmless repeat.
 */
const ACK_WAIT_MS = 10_000;

export interface JetStreamRuntimeOptions {
  connection: NatsConnection;
  subjects: Subjects;
  logger: Logger;
}

export function createJetStreamRuntime({ connection, subjects, logger }: JetStreamRuntimeOptions): WorkerRuntime {
  const js = connection.jetstream();
  const running = new Set<Consumer>();

  async function ensureDurable(stream: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
    const jsm = await connection.jetstreamManager();
    try {
      await jsm.consumers.info(stream, config.durable_name);
    } catch (error) {
      if (!String(error).includes("consumer not found")) throw error;
      try {
        await jsm.consumers.add(stream, config);
      } catch (raced) {
        // Another node created it first with the same name: use theirs.
        if (!String(raced).includes("already")) throw raced;
      }
      return;
    }
    const { ack_wait, max_ack_pending, filter_subject } = config;
    await jsm.consumers.update(stream, config.durable_name, { ack_wait, max_ack_pending, filter_subject });
  }

  return {
    async startConsumer<T>(spec: ConsumerSpec<T>): Promise<Consumer> {
      const isWork = spec.filterSubject.startsWith(subjects.work(""));
      const stream = isWork ? subjects.workStream : subjects.eventStream;
      const durable = subjects.durable(spec.name);
      const batchSize = spec.batchSize ?? DEFAULT_BATCH_SIZE;
      await ensureDurable(stream, {
        durable_name: durable,
        filter_subject: spec.filterSubject,
        ack_policy: AckPolicy.Explicit,
        // A new consumer of events starts from now (history is for reindex/backfill tools);
        // work items wait for their consumer however long it takes to appear.
        deliver_policy: isWork ? DeliverPolicy.All : DeliverPolicy.New,
        ack_wait: (spec.ackWaitMs ?? ACK_WAIT_MS) * NANOS_PER_MS,
        // Scheduling naks ("not due yet") must never exhaust a delivery: the runner enforces
        // maxDeliver for failures itself.
        max_deliver: -1,
        max_ack_pending: Math.max(1_000, batchSize * 4),
      });
      const queue = new BatchQueue(spec, logger);
      const messages = await (await js.consumers.get(stream, durable)).consume({
        max_messages: batchSize * 2,
        callback: (msg) => queue.push(toRawDelivery(msg)),
      });
      const consumer: Consumer = {
        async stop() {
          running.delete(consumer);
          await messages.close();
          await queue.idle();
        },
      };
      running.add(consumer);
      return consumer;
    },
    async publishWork(subject, data, msgId) {
      await js.publish(subject, data, { msgID: msgId });
    },
    async close() {
      await Promise.all([...running].map((consumer) => consumer.stop()));
    },
  };
}

function toRawDelivery(msg: JsMsg): RawDelivery {
  return {
    data: msg.data,
    headers: fromNatsHeaders(msg.headers),
    subject: msg.subject,
    deliveryCount: msg.info.deliveryCount,
    ack: () => msg.ack(),
    retry: (delayMs) => msg.nak(delayMs),
    terminate: (reason) => msg.term(reason),
  };
}
