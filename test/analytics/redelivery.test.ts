/**
 * Exactly once: the consumer counts each event of the log once however often it is delivered —
 * publishes lost (the missing positions are read from the log, and in NATS mode the relay then
 * publishes them again), a restart on the same database (the relay republishes what it had not
 * checkpointed), and every event published to JetStream a second time.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { connect, headers as natsHeaders } from "nats";
import { createSubjects } from "../../src/log/subjects.ts";
import { eventually } from "../helpers/feed.ts";
import { sendText } from "../helpers/fixtures.ts";
import { deleteNatsState, multiNodeAvailable, natsPrefix, realtimeEnv, testNatsUrl } from "../helpers/realtime.ts";
import { createTestDatabase, startTestServer, type FreshDatabase, type StartOptions, type TestServer } from "../helpers/test-server.ts";
import { conversationFigures, figuresMatch, mixedWorkload, settle, storyFigures, waitForFigures, type Expected } from "./support.ts";

/** Servers one after another on one database, one NATS prefix and one media directory. */
async function openShared() {
  const database: FreshDatabase | null = await createTestDatabase();
  const dir = await mkdtemp(path.join(os.tmpdir(), "parley-analytics-"));
  const prefix = natsPrefix();
  const servers: TestServer[] = [];
  return {
    prefix,
    async start(options: StartOptions["appOptions"] = {}, previous?: TestServer): Promise<TestServer> {
      const env = realtimeEnv(prefix, {
        DATA_DIR: dir,
        ...(database ? {} : { PGLITE_PATH: path.join(dir, "pglite") }),
        ...(previous && { PORT: String(previous.port), JWT_SECRET: previous.secret }),
      });
      const server = await startTestServer(env, { ...(database && { databaseUrl: database.url }), appOptions: options });
      servers.push(server);
      return server;
    },
    async close() {
      for (const server of servers) await server.stop();
      await database?.drop();
      await deleteNatsState(prefix).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every figure the tests read, to compare before and after. */
async function snapshot(server: TestServer, expected: Expected) {
  const operator = server.clientsFor("redelivery-operator", "grpc", { roles: ["operator"] });
  return {
    hour: await conversationFigures(operator, expected.conversationId, "hour"),
    day: await conversationFigures(operator, expected.conversationId, "day"),
    stories: await storyFigures(operator, expected.author, "hour"),
  };
}

describe("analytics counts each event once", function () {
  this.timeout(90_000);

  it("when publishes are lost: the missing positions are read from the event log", async () => {
    const shared = await openShared();
    try {
      let dropping = true;
      const server = await shared.start({ faults: { dropPublish: (_partition, position) => dropping && position % 3n === 0n } });
      const expected = await mixedWorkload(server);
      dropping = false;
      await settle(server, expected);
      await waitForFigures(server.clientsFor(expected.admin), expected);
      // In NATS mode the relay publishes the lost events after the feed hub filled them: by then
      // they are below the watermark. Give that time, then the figures must not have moved.
      await new Promise((r) => setTimeout(r, 3_000));
      assert.ok(await figuresMatch(server.clientsFor(expected.admin), expected), "nothing counted twice");
    } finally {
      await shared.close();
    }
  });

  it("across a restart on the same database, and the consumer continues after it", async () => {
    const shared = await openShared();
    try {
      const first = await shared.start();
      const expected = await mixedWorkload(first);
      await waitForFigures(first.clientsFor(expected.admin), expected);
      await first.stop();
      const second = await shared.start({}, first);
      await new Promise((r) => setTimeout(r, 2_000));
      assert.ok(await figuresMatch(second.clientsFor(expected.admin), expected), "the figures survived the restart, nothing counted twice");
      const before = await snapshot(second, expected);
      await sendText(second.clientsFor(expected.admin), expected.conversationId, "after the restart");
      await eventually(async () => {
        const now = await snapshot(second, expected);
        const total = (m: Map<number, { messages: number }>) => [...m.values()].reduce((n, f) => n + f.messages, 0);
        return total(now.day) === total(before.day) + 1 && total(now.hour) === total(before.hour) + 1;
      }, "one more message counted once");
    } finally {
      await shared.close();
    }
  });

  it("when every event is published to JetStream a second time (NATS)", async function () {
    if (!multiNodeAvailable()) this.skip();
    const shared = await openShared();
    const nc = await connect({ servers: testNatsUrl()!.split(",") });
    try {
      const server = await shared.start();
      const expected = await mixedWorkload(server);
      await waitForFigures(server.clientsFor(expected.admin), expected);
      const before = await snapshot(server, expected);

      const subjects = createSubjects(shared.prefix);
      const jsm = await nc.jetstreamManager();
      const js = nc.jetstream();
      const info = await jsm.streams.info(subjects.eventStream);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const stored = await jsm.streams.getMessage(subjects.eventStream, { seq });
        const copy = natsHeaders();
        for (const [key, values] of stored.header ?? []) if (key !== "Nats-Msg-Id") for (const v of values) copy.append(key, v);
        await js.publish(stored.subject, stored.data, { headers: copy, msgID: `again-${seq}` });
      }
      await eventually(async () => {
        const consumer = await jsm.consumers.info(subjects.eventStream, subjects.durable("analytics"));
        return consumer.num_pending === 0 && consumer.num_ack_pending === 0;
      }, "the analytics consumer through the copies");
      assert.deepEqual(await snapshot(server, expected), before);
    } finally {
      await nc.close();
      await shared.close();
    }
  });
});
