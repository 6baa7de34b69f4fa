/**
 * The durable-consumer runtime behind the notifier, the search indexer and story expiry: real
 * NATS JetStream in PostgreSQL mode, the in-process bus in embedded mode. Events are published
 * through the real bus, exactly as the services publish them after a commit.
 */
import assert from "node:assert/strict";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { connect, type NatsConnection } from "nats";
import { pino } from "pino";
import { EventSchema } from "../../gen/parley/v1/event_pb.ts";
import { createInProcessBus, createNatsBus, createSubjects, provisionNats, type EventBus } from "../../src/log/index.ts";
import type { StoredEvent } from "../../src/log/event-log.ts";
import { createWorkerRuntime, decodeStoredEvent, type Consumer, type Delivered, type Outcome, type WorkerRuntime } from "../../src/workers/index.ts";
import { deleteNatsState, natsPrefix, testNatsUrl } from "../helpers/realtime.ts";

const logger = pino({ level: "silent" });

interface Harness {
  nats: NatsConnection | null;
  bus: EventBus;
  runtime: WorkerRuntime;
  subjects: ReturnType<typeof createSubjects>;
  prefix: string;
}

async function startHarness(): Promise<Harness> {
  const prefix = natsPrefix();
  const subjects = createSubjects(prefix);
  const url = testNatsUrl();
  const nats = url ? await connect({ servers: url }) : null;
  if (nats) await provisionNats(nats, subjects, { retentionMs: 60_000, presenceTtlMs: 10_000 });
  const bus = nats ? createNatsBus({ connection: nats, subjects, onError: () => {} }) : createInProcessBus();
  return { nats, bus, subjects, prefix, runtime: createWorkerRuntime({ nats, subjects, bus, logger }) };
}

async function stopHarness(h: Harness): Promise<void> {
  await h.runtime.close();
  await h.bus.close();
  await h.nats?.close();
  await deleteNatsState(h.prefix).catch(() => undefined);
}

let position = 0n;
function storedEvent(conversationId: string, kind: MessageInitShape<typeof EventSchema>["kind"]): StoredEvent {
  position += 1n;
  const event = create(EventSchema, { id: crypto.randomUUID(), conversationId, actorId: "alice", kind });
  return { partition: 0, position, conversationId, targetUserId: null, event, payload: toBinary(EventSchema, event) };
}

const messageCreated = (conversationId: string, text: string) =>
  storedEvent(conversationId, { case: "messageCreated", value: { message: { conversationId, content: { case: "text", value: text } } } });
const memberRemoved = (conversationId: string) => storedEvent(conversationId, { case: "memberRemoved", value: { userId: "bob", left: true } });

/** Resolves when `check` holds, polling; fails after the deadline. */
async function eventually(check: () => boolean, what: string, deadlineMs = 10_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const textOf = (d: Delivered<StoredEvent>) => {
  const kind = d.value.event.kind;
  return kind.case === "messageCreated" && kind.value.message?.content.case === "text" ? kind.value.message.content.value : "";
};

describe("durable consumer runtime", function () {
  let h: Harness;
  const consumers: Consumer[] = [];
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    for (const c of consumers.splice(0)) await c.stop();
    await stopHarness(h);
  });

  it("delivers committed events of the filtered category only, in batches", async () => {
    const seen: string[] = [];
    let batches = 0;
    consumers.push(
      await h.runtime.startConsumer({
        name: "category",
        filterSubject: h.subjects.eventsOfCategory("message"),
        decode: decodeStoredEvent,
        async handle(batch) {
          batches++;
          seen.push(...batch.map(textOf));
          return batch.map((): Outcome => "done");
        },
      }),
    );
    const conversation = crypto.randomUUID();
    await h.bus.publish([messageCreated(conversation, "one"), memberRemoved(conversation), messageCreated(conversation, "two")]);
    await eventually(() => seen.length >= 2, "two message events");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(seen.sort(), ["one", "two"]);
    assert.ok(batches >= 1 && batches <= 2);
  });

  it("redelivers after a retry outcome, with a higher delivery count", async () => {
    const deliveries: number[] = [];
    consumers.push(
      await h.runtime.startConsumer({
        name: "retry",
        filterSubject: h.subjects.allConversationEvents,
        decode: decodeStoredEvent,
        async handle(batch) {
          return batch.map((d): Outcome => {
            deliveries.push(d.deliveryCount);
            return d.deliveryCount < 3 ? { retryAfterMs: 50 } : "done";
          });
        },
      }),
    );
    await h.bus.publish([messageCreated(crypto.randomUUID(), "later")]);
    await eventually(() => deliveries.length >= 3, "three deliveries");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(deliveries, [1, 2, 3]);
  });

  it("retries a batch whose handler throws, and terminates poison without retrying it", async () => {
    const seen: Array<[string, number]> = [];
    consumers.push(
      await h.runtime.startConsumer({
        name: "failures",
        filterSubject: h.subjects.allConversationEvents,
        decode: decodeStoredEvent,
        async handle(batch) {
          for (const d of batch) seen.push([textOf(d), d.deliveryCount]);
          if (batch.some((d) => textOf(d) === "flaky" && d.deliveryCount === 1)) throw new Error("database unavailable");
          return batch.map((d): Outcome => (textOf(d) === "poison" ? { poison: "cannot be indexed" } : "done"));
        },
      }),
    );
    await h.bus.publish([messageCreated(crypto.randomUUID(), "flaky")]);
    await eventually(() => seen.some(([text, count]) => text === "flaky" && count === 2), "the flaky event again");
    await h.bus.publish([messageCreated(crypto.randomUUID(), "poison")]);
    await eventually(() => seen.some(([text]) => text === "poison"), "the poison event");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(seen.filter(([text]) => text === "poison").length, 1, "poison is never redelivered");
    assert.equal(seen.filter(([text]) => text === "flaky").length, 2, "flaky is done after its retry");
  });

  it("stores a work item once per id and delivers it to its consumer", async () => {
    const seen: string[] = [];
    consumers.push(
      await h.runtime.startConsumer({
        name: "work",
        filterSubject: h.subjects.work("story", "expire"),
        decode: (data) => new TextDecoder().decode(data),
        async handle(batch) {
          seen.push(...batch.map((d) => d.value));
          return batch.map((): Outcome => "done");
        },
      }),
    );
    await h.runtime.publishWork(h.subjects.work("story", "expire"), new TextEncoder().encode("s1"), "s1");
    await h.runtime.publishWork(h.subjects.work("story", "expire"), new TextEncoder().encode("s1"), "s1");
    await h.runtime.publishWork(h.subjects.work("story", "other"), new TextEncoder().encode("x"), "x");
    await eventually(() => seen.length >= 1, "the work item");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(seen, ["s1"]);
  });

  it("keeps deliveries for a durable consumer while it is stopped (JetStream only)", async function () {
    if (!h.nats) this.skip();
    const seen: string[] = [];
    const spec = {
      name: "durable",
      filterSubject: h.subjects.allConversationEvents,
      decode: decodeStoredEvent,
      async handle(batch: readonly Delivered<StoredEvent>[]) {
        seen.push(...batch.map(textOf));
        return batch.map((): Outcome => "done");
      },
    };
    const first = await h.runtime.startConsumer(spec);
    await h.bus.publish([messageCreated(crypto.randomUUID(), "before")]);
    await eventually(() => seen.includes("before"), "the first event");
    await first.stop();
    await h.bus.publish([messageCreated(crypto.randomUUID(), "while stopped")]);
    consumers.push(await h.runtime.startConsumer(spec));
    await eventually(() => seen.includes("while stopped"), "the event published while stopped");
    assert.deepEqual(seen, ["before", "while stopped"]);
  });
});
