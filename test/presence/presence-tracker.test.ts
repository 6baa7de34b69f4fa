/**
 * The presence trackers against their real dependencies: the embedded database (or, with
 * DATABASE_URL, a fresh PostgreSQL database dropped afterwards), and for the NATS tracker the
 * real NATS at NATS_URL (default nats://127.0.0.1:4222; NATS_URL=off skips it) under a prefix
 * of its own, provisioned like production with a 1.5 s presence TTL. Announcements are
 * observed on a real bus: the NATS bus for the NATS tracker, the in-process bus otherwise.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import type { Kysely } from "kysely";
import { connect, type NatsConnection } from "nats";
import pg from "pg";
import type { Logger } from "pino";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { ConversationKind, Role, insertConversation } from "../../src/conversations/conversation-repository.ts";
import { migrate, openDatabase, type Database, type DatabaseHandle } from "../../src/db/index.ts";
import type { EventBus } from "../../src/log/event-bus.ts";
import { createInProcessBus } from "../../src/log/in-process-bus.ts";
import { createNatsBus } from "../../src/log/nats-bus.ts";
import { provisionNats } from "../../src/log/provision.ts";
import { createSubjects, type Subjects } from "../../src/log/subjects.ts";
import { createMemoryPresenceTracker, createNatsPresenceTracker, type PresenceTracker } from "../../src/presence/index.ts";
import { insertUserIfMissing } from "../../src/users/user-repository.ts";

const TTL_MS = 1_500;
const NATS_URL = process.env.NATS_URL === "off" ? null : (process.env.NATS_URL ?? "nats://127.0.0.1:4222");
/** How long to keep listening for announcements that should not come. */
const QUIET_MS = 300;

interface TestDatabase {
  handle: DatabaseHandle;
  drop(): Promise<void>;
}

async function openTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    const handle = await openDatabase({ url: null, embeddedPath: "memory://", poolSize: 1 });
    await migrate(handle.db);
    return { handle, drop: async () => {} };
  }
  const name = `parley_test_${randomBytes(6).toString("hex")}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.query(statement).finally(() => client.end());
  };
  await admin(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ url: url.toString(), embeddedPath: "memory://", poolSize: 4 });
  await migrate(handle.db);
  return { handle, drop: () => admin(`drop database if exists ${name} with (force)`) };
}

/** A logger that keeps warnings, so a test can assert there were none. */
function recordingLogger(): { logger: Pick<Logger, "warn">; warnings: unknown[][] } {
  const warnings: unknown[][] = [];
  return { logger: { warn: (...args: unknown[]) => void warnings.push(args) } as unknown as Pick<Logger, "warn">, warnings };
}

/** Presence announcements seen on the bus, by user. */
class Announcements {
  readonly #seen: { event: Event; conversationId: string }[] = [];
  readonly #stop: () => void;

  constructor(bus: EventBus) {
    this.#stop = bus.onEphemeral((route, event) => {
      if (event.kind.case === "presenceChanged" && "conversationId" in route) this.#seen.push({ event, conversationId: route.conversationId });
    });
  }

  /** One entry per announcement (its copies to several conversations share the event id). */
  of(userId: string, online: boolean) {
    const byId = new Map<string, { event: Event; conversations: Set<string> }>();
    for (const { event, conversationId } of this.#seen) {
      if (event.kind.case !== "presenceChanged" || event.kind.value.userId !== userId || event.kind.value.online !== online) continue;
      const entry = byId.get(event.id) ?? { event, conversations: new Set<string>() };
      entry.conversations.add(conversationId);
      byId.set(event.id, entry);
    }
    return [...byId.values()];
  }

  stop() {
    this.#stop();
  }
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await delay(20);
  }
  return Date.now() - started;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A user (with dots and an @ in the id, which NATS keys cannot hold) in a group with one
 * partner and a direct conversation with another: presence changes go to both conversations.
 */
async function createUser(db: Kysely<Database>) {
  const tag = randomBytes(4).toString("hex");
  const userId = `user.${tag}@example.com`;
  const partners = [`partner-a-${tag}`, `partner-b-${tag}`];
  for (const id of [userId, ...partners]) await insertUserIfMissing(db, id);
  const conversationIds = [randomUUID(), randomUUID()];
  for (const [i, conversationId] of conversationIds.entries()) {
    await insertConversation(db, {
      id: conversationId,
      type: i === 0 ? ConversationKind.GROUP : ConversationKind.DIRECT,
      name: "",
      description: "",
      createdBy: userId,
      members: [
        { userId, role: Role.ADMIN },
        { userId: partners[i]!, role: Role.MEMBER },
      ],
    });
  }
  return { userId, conversationIds };
}

async function presenceOf(tracker: PresenceTracker, userId: string) {
  const info = (await tracker.lookup([userId])).get(userId);
  assert.ok(info, `${userId} should be known`);
  return info;
}

const isOnline = (tracker: PresenceTracker, userId: string) => async () => (await presenceOf(tracker, userId)).online;
const isOffline = (tracker: PresenceTracker, userId: string) => async () => !(await presenceOf(tracker, userId)).online;

async function lastSeenInDatabase(db: Kysely<Database>, userId: string): Promise<Date | null> {
  const row = await db.selectFrom("users").select("last_seen_at").where("id", "=", userId).executeTakeFirstOrThrow();
  return row.last_seen_at;
}

interface Backend {
  db: Kysely<Database>;
  bus: EventBus;
  /** A tracker as one node of the deployment. */
  tracker(nodeId: string): PresenceTracker;
}

/** The cases every tracker must pass on one node. */
function singleNodeCases(name: string, backend: () => Backend) {
  describe(`${name} on one node`, () => {
    let b: Backend;
    let tracker: PresenceTracker;
    let announcements: Announcements;

    beforeEach(() => {
      b = backend();
      tracker = b.tracker(`node-${randomBytes(3).toString("hex")}`);
      announcements = new Announcements(b.bus);
    });
    afterEach(async () => {
      announcements.stop();
      await tracker.close();
    });

    it("reports a user online while they hold a stream, announcing it once to each of their conversations", async () => {
      const { userId, conversationIds } = await createUser(b.db);
      assert.deepEqual(await presenceOf(tracker, userId), { online: false, lastSeenAt: null });
      tracker.streamOpened(userId);
      await eventually("the user is online", isOnline(tracker, userId));
      await eventually("the online announcement arrives", async () => announcements.of(userId, true).length > 0);
      await delay(QUIET_MS);
      const [online, ...more] = announcements.of(userId, true);
      assert.equal(more.length, 0);
      assert.deepEqual([...online!.conversations].sort(), [...conversationIds].sort());
      assert.equal(online!.event.actorId, userId);
      assert.equal(online!.event.kind.case === "presenceChanged" && online!.event.kind.value.lastSeenAt, undefined);
      assert.deepEqual(await presenceOf(tracker, userId), { online: true, lastSeenAt: null });
    });

    it("takes the user offline when their last stream closes, with last-seen recorded and announced once", async () => {
      const { userId } = await createUser(b.db);
      tracker.streamOpened(userId);
      tracker.streamOpened(userId);
      await eventually("the user is online", isOnline(tracker, userId));
      tracker.streamClosed(userId);
      await delay(QUIET_MS);
      assert.equal((await presenceOf(tracker, userId)).online, true, "one stream is still open");
      const before = Date.now();
      tracker.streamClosed(userId);
      await eventually("the user is offline", isOffline(tracker, userId));
      await eventually("the offline announcement arrives", async () => announcements.of(userId, false).length > 0);
      await delay(QUIET_MS);
      const offline = announcements.of(userId, false);
      assert.equal(offline.length, 1);
      const { lastSeenAt } = await presenceOf(tracker, userId);
      assert.ok(lastSeenAt && lastSeenAt.getTime() >= before - 5 && lastSeenAt.getTime() <= Date.now());
      assert.equal((await lastSeenInDatabase(b.db, userId))?.getTime(), lastSeenAt.getTime());
      const announced = offline[0]!.event.kind;
      assert.ok(announced.case === "presenceChanged" && announced.value.lastSeenAt);
      assert.equal(Number(announced.value.lastSeenAt.seconds) * 1000 + announced.value.lastSeenAt.nanos / 1e6, lastSeenAt.getTime());
    });

    it("announces one online and one offline however often a user's streams flap", async () => {
      const { userId } = await createUser(b.db);
      for (let i = 0; i < 5; i++) tracker.streamOpened(userId);
      for (let i = 0; i < 200; i++) {
        tracker.streamClosed(userId);
        tracker.streamOpened(userId);
        if (i % 20 === 0) await delay(1);
      }
      await eventually("the user is online", isOnline(tracker, userId));
      await delay(QUIET_MS);
      assert.equal(announcements.of(userId, true).length, 1);
      assert.equal(announcements.of(userId, false).length, 0);
      for (let i = 0; i < 5; i++) tracker.streamClosed(userId);
      tracker.streamClosed(userId); // one more than were open: ignored
      await eventually("the user is offline", isOffline(tracker, userId));
      await delay(QUIET_MS);
      assert.equal(announcements.of(userId, true).length, 1);
      assert.equal(announcements.of(userId, false).length, 1);
    });

    it("announces again when a user comes back after going offline", async () => {
      const { userId } = await createUser(b.db);
      for (let round = 1; round <= 3; round++) {
        tracker.streamOpened(userId);
        await eventually(`online announcement ${round}`, async () => announcements.of(userId, true).length === round);
        tracker.streamClosed(userId);
        await eventually(`offline announcement ${round}`, async () => announcements.of(userId, false).length === round);
      }
      await delay(QUIET_MS);
      assert.equal(announcements.of(userId, true).length, 3);
      assert.equal(announcements.of(userId, false).length, 3);
      assert.equal((await presenceOf(tracker, userId)).online, false);
    });

    it("leaves out users it does not know", async () => {
      const { userId } = await createUser(b.db);
      tracker.streamOpened("nobody-by-this-name");
      const found = await tracker.lookup([userId, "nobody-by-this-name", userId]);
      assert.deepEqual([...found.keys()], [userId]);
      tracker.streamClosed("nobody-by-this-name");
    });

    it("takes its users offline on close, recording last-seen and announcing it", async () => {
      const { userId } = await createUser(b.db);
      tracker.streamOpened(userId);
      await eventually("the user is online", isOnline(tracker, userId));
      await tracker.close();
      await eventually("the offline announcement arrives", async () => announcements.of(userId, false).length === 1);
      const other = b.tracker(`node-${randomBytes(3).toString("hex")}`);
      try {
        const info = await presenceOf(other, userId);
        assert.equal(info.online, false);
        assert.ok(info.lastSeenAt);
      } finally {
        await other.close();
      }
      tracker.streamOpened(userId); // after close: ignored
      tracker.streamClosed(userId);
    });
  });
}

describe("presence", () => {
  let database: TestDatabase;

  before(async function () {
    // Migrating a fresh embedded database takes seconds, more on a busy machine.
    this.timeout(120_000);
    database = await openTestDatabase();
  });
  after(async () => {
    await database?.handle.close();
    await database?.drop();
  });

  describe("memory tracker", () => {
    let bus: EventBus;
    before(() => {
      bus = createInProcessBus();
    });
    after(async () => {
      await bus.close();
    });
    singleNodeCases("memory tracker", () => ({
      db: database.handle.db,
      bus,
      tracker: () => createMemoryPresenceTracker({ db: database.handle.db, bus, logger: recordingLogger().logger }),
    }));
  });

  (NATS_URL === null ? describe.skip : describe)("NATS tracker", () => {
    let nc: NatsConnection;
    let subjects: Subjects;
    let bus: EventBus;
    const trackers = new Set<PresenceTracker>();
    const { logger, warnings } = recordingLogger();

    const natsTracker = (nodeId: string, connection = nc) => {
      const tracker = createNatsPresenceTracker({ connection, subjects, db: database.handle.db, bus, nodeId, ttlMs: TTL_MS, logger });
      trackers.add(tracker);
      return tracker;
    };

    before(async () => {
      nc = await connect({ servers: NATS_URL!, timeout: 2_000 });
      subjects = createSubjects(`ptest${randomBytes(5).toString("hex")}`);
      await provisionNats(nc, subjects, { retentionMs: 10 * 60_000, presenceTtlMs: TTL_MS });
      bus = createNatsBus({ connection: nc, subjects, onError: (error) => assert.fail(String(error)) });
    });
    after(async () => {
      if (!nc) return;
      for (const tracker of trackers) await tracker.close();
      await bus?.close();
      const jsm = await nc.jetstreamManager();
      for (const stream of [`KV_${subjects.presenceBucket}`, subjects.eventStream]) await jsm.streams.delete(stream).catch(() => {});
      await nc.close();
    });

    singleNodeCases("NATS tracker", () => ({ db: database.handle.db, bus, tracker: (nodeId) => natsTracker(nodeId) }));

    describe("across nodes", () => {
      let a: PresenceTracker;
      let b: PresenceTracker;
      let announcements: Announcements;

      beforeEach(async () => {
        a = natsTracker(`node-a-${randomBytes(3).toString("hex")}`);
        b = natsTracker(`node-b-${randomBytes(3).toString("hex")}`);
        announcements = new Announcements(bus);
        warnings.length = 0;
        await nc.flush();
      });
      afterEach(async () => {
        announcements.stop();
        await a.close();
        await b.close();
      });

      it("reports a user held on one node as online from another", async () => {
        const { userId } = await createUser(database.handle.db);
        a.streamOpened(userId);
        await eventually("node B sees the user online", isOnline(b, userId));
        assert.deepEqual(await presenceOf(b, userId), { online: true, lastSeenAt: null });
      });

      it("keeps a user online while another node still holds them, then takes them offline once", async () => {
        const { userId } = await createUser(database.handle.db);
        a.streamOpened(userId);
        await eventually("node B sees the user online", isOnline(b, userId));
        b.streamOpened(userId);
        await delay(QUIET_MS);
        a.streamClosed(userId);
        // Longer than the TTL: node B's heartbeats keep the user online on its own.
        await delay(TTL_MS + 500);
        assert.equal((await presenceOf(a, userId)).online, true);
        assert.equal((await presenceOf(b, userId)).online, true);
        assert.equal(announcements.of(userId, false).length, 0);
        assert.equal(announcements.of(userId, true).length, 1);

        b.streamClosed(userId);
        await eventually("node A sees the user offline", isOffline(a, userId));
        await delay(QUIET_MS);
        const offline = announcements.of(userId, false);
        assert.equal(offline.length, 1);
        const { lastSeenAt } = await presenceOf(a, userId);
        assert.ok(lastSeenAt);
        assert.equal((await lastSeenInDatabase(database.handle.db, userId))?.getTime(), lastSeenAt.getTime());
        assert.equal(warnings.length, 0, JSON.stringify(warnings));
      });

      it("announces once when nodes race to bring a user online and to take them offline", async () => {
        for (let round = 0; round < 5; round++) {
          const { userId } = await createUser(database.handle.db);
          a.streamOpened(userId);
          b.streamOpened(userId);
          await eventually("both nodes see the user online", async () => (await isOnline(a, userId)()) && (await isOnline(b, userId)()));
          await delay(QUIET_MS);
          a.streamClosed(userId);
          b.streamClosed(userId);
          await eventually("both nodes see the user offline", async () => (await isOffline(a, userId)()) && (await isOffline(b, userId)()));
          await delay(QUIET_MS);
          assert.equal(announcements.of(userId, true).length, 1, `round ${round}: online announcements`);
          assert.equal(announcements.of(userId, false).length, 1, `round ${round}: offline announcements`);
        }
      });

      it("takes the users of a node that dies without closing offline after the TTL, and closing it later does not hang", async () => {
        const { userId } = await createUser(database.handle.db);
        const doomedConnection = await connect({ servers: NATS_URL!, timeout: 2_000 });
        const doomed = natsTracker(`node-doomed-${randomBytes(3).toString("hex")}`, doomedConnection);
        doomed.streamOpened(userId);
        await eventually("node B sees the user online", isOnline(b, userId));
        // Let a heartbeat or two pass, then the node vanishes: no close(), no more heartbeats.
        await delay(TTL_MS);
        await doomedConnection.close();
        const died = Date.now();
        assert.equal((await presenceOf(b, userId)).online, true, "the hold lasts until the TTL");
        await eventually("node B sees the user offline", isOffline(b, userId), TTL_MS * 3);
        const after = Date.now() - died;
        assert.ok(after <= TTL_MS + 500, `offline ${after} ms after the node died (TTL ${TTL_MS} ms)`);
        assert.equal(announcements.of(userId, false).length, 0, "a dead node announces nothing");

        const closing = Date.now();
        await doomed.close();
        assert.ok(Date.now() - closing < 1_000, "close() returns promptly when NATS is already closed");
        assert.ok(await lastSeenInDatabase(database.handle.db, userId), "close() still records last-seen");
      });
    });
  });
});
