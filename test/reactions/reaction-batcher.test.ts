/**
 * The reaction batcher against the real database layer: embedded PGlite, or, when
 * DATABASE_URL is set, a freshly created PostgreSQL database dropped afterwards. Rows are set
 * up through the repositories and the SendBatcher; the RPC surface is tested black-box
 * elsewhere.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { createContextValues, createHandlerContext, type HandlerContext } from "@connectrpc/connect";
import pg from "pg";
import type { Kysely } from "kysely";
import { create } from "@bufbuild/protobuf";
import {
  AddReactionRequestSchema,
  GetMessageRequestSchema,
  ListMessagesRequestSchema,
  MessageService as MessageServiceDesc,
  RemoveReactionRequestSchema,
} from "../../gen/parley/v1/message_service_pb.ts";
import { callerKey } from "../../src/auth/user-context.ts";
import type { Limits } from "../../src/config.ts";
import { ConversationKind, Role, insertConversation } from "../../src/conversations/conversation-repository.ts";
import { migrate, openDatabase, type Database, type DatabaseHandle } from "../../src/db/index.ts";
import { InvalidInputError, NotFoundError } from "../../src/errors.ts";
import type { EventLogLayout, StoredEvent } from "../../src/log/event-log.ts";
import { openEventLog } from "../../src/log/log-layout.ts";
import { MessageService, SendBatcher } from "../../src/messages/index.ts";
import { ReactionBatcher, type ReactionCommand, type ReactionOutcome } from "../../src/reactions/index.ts";
import { findReactionSummaries } from "../../src/reactions/reaction-repository.ts";
import { insertUserIfMissing } from "../../src/users/user-repository.ts";

const THUMBS = "👍";
const HEART = "❤️";
const FAMILY = "👨‍👩‍👧‍👦";

interface TestDatabase {
  handle: DatabaseHandle;
  log: EventLogLayout;
  drop(): Promise<void>;
}

/** Embedded in memory, or a fresh database on the DATABASE_URL server. */
async function openTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    const handle = await openDatabase({ url: null, embeddedPath: "memory://", poolSize: 1 });
    await migrate(handle.db);
    return { handle, log: await openEventLog(handle.db, 4), drop: async () => {} };
  }
  const name = `parley_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (c) => c.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ url: url.toString(), embeddedPath: "memory://", poolSize: 8 });
  await migrate(handle.db);
  return { handle, log: await openEventLog(handle.db, 4), drop: () => withAdmin(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`)) };
}

async function withAdmin(url: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

/** Each effective change the batcher reported, flattened, with the batch it came in. */
interface Reported {
  batch: number;
  stored: StoredEvent;
}

describe("ReactionBatcher", () => {
  let database: TestDatabase;
  let db: Kysely<Database>;
  let sends: SendBatcher;
  let reactions: ReactionBatcher;
  let reported: Reported[];
  let batches: number;
  let conversationId: string;
  const owner = `owner-${randomBytes(3).toString("hex")}`;
  const members = Array.from({ length: 300 }, (_, i) => `member${i}-${randomBytes(3).toString("hex")}`);
  const outsider = `outsider-${randomBytes(3).toString("hex")}`;

  before(async () => {
    database = await openTestDatabase();
    db = database.handle.db;
    for (const id of [owner, ...members, outsider]) await insertUserIfMissing(db, id);
    conversationId = randomUUID();
    await insertConversation(db, {
      id: conversationId,
      type: ConversationKind.GROUP,
      name: "reactions",
      description: "",
      createdBy: owner,
      members: [{ userId: owner, role: Role.ADMIN }, ...members.map((userId) => ({ userId, role: Role.MEMBER }))],
    });
    sends = new SendBatcher(db, database.log);
  });

  beforeEach(() => {
    reported = [];
    batches = 0;
    reactions = newBatcher();
  });

  afterEach(async () => {
    await reactions.drain();
  });

  after(async () => {
    await sends?.drain();
    await database?.handle.close();
    await database?.drop();
  });

  function newBatcher(options: { maxInFlight?: number } = {}): ReactionBatcher {
    return new ReactionBatcher(
      db,
      database.log,
      (stored) => {
        batches++;
        for (const s of stored) reported.push({ batch: batches, stored: s });
      },
      options,
    );
  }

  async function newMessage(): Promise<bigint> {
    const row = await sends.send({
      conversationId,
      senderId: owner,
      clientMessageId: randomUUID(),
      replyToSeq: null,
      content: { kind: "text", text: "react to me" },
    });
    return BigInt(row.seq);
  }

  function command(op: ReactionCommand["op"], seq: bigint, userId: string, emoji = THUMBS): ReactionCommand {
    return { op, conversationId, seq, emoji, userId };
  }

  /** The reaction events reported for one message, in log order. */
  function eventsFor(seq: bigint) {
    return reported
      .filter(({ stored }) => {
        const k = stored.event.kind;
        return (k.case === "reactionAdded" || k.case === "reactionRemoved") && k.value.messageSeq === seq;
      })
      .sort((a, b) => (a.stored.position < b.stored.position ? -1 : 1));
  }

  function payload(r: Reported) {
    const k = r.stored.event.kind;
    if (k.case !== "reactionAdded" && k.case !== "reactionRemoved") throw new Error(`not a reaction event: ${k.case}`);
    return { kind: k.case, ...k.value, actorId: r.stored.event.actorId, conversationId: r.stored.conversationId };
  }

  async function storedCount(seq: bigint, emoji: string): Promise<{ count: bigint | undefined; rows: number }> {
    const counter = await db
      .selectFrom("message_reaction_counts")
      .select("count")
      .where("conversation_id", "=", conversationId)
      .where("seq", "=", seq.toString())
      .where("emoji", "=", emoji)
      .executeTakeFirst();
    const rows = await db
      .selectFrom("message_reactions")
      .select((eb) => eb.fn.countAll<string>().as("n"))
      .where("conversation_id", "=", conversationId)
      .where("seq", "=", seq.toString())
      .where("emoji", "=", emoji)
      .executeTakeFirstOrThrow();
    return { count: counter === undefined ? undefined : BigInt(counter.count), rows: Number(rows.n) };
  }

  it("counts 300 simultaneous reactions exactly, with one event each whose counts climb to 300", async function () {
    this.timeout(60_000);
    const seq = await newMessage();
    const outcomes = await Promise.all(members.map((userId) => reactions.submit(command("add", seq, userId))));

    assert.ok(outcomes.every((o) => o.changed), "every first reaction is added");
    for (const o of outcomes) {
      const mine = o.reactions.find((r) => r.emoji === THUMBS);
      assert.ok(mine && mine.reactedByMe && mine.count >= 1n, "each caller sees their own reaction");
    }
    assert.equal(Math.max(...outcomes.map((o) => Number(o.reactions[0]!.count))), 300);
    assert.deepEqual(await storedCount(seq, THUMBS), { count: 300n, rows: 300 });

    const events = eventsFor(seq).map(payload);
    assert.equal(events.length, 300);
    assert.ok(events.every((e) => e.kind === "reactionAdded" && e.emoji === THUMBS && e.conversationId === conversationId && e.actorId === e.userId));
    assert.deepEqual(events.map((e) => e.count), Array.from({ length: 300 }, (_, i) => BigInt(i + 1)), "counts climb by one in log order");
    assert.equal(new Set(events.map((e) => e.userId)).size, 300);
    assert.ok(batches <= 10, `300 reactions were written in ${batches} transactions; expected a few batches`);

    const positions = eventsFor(seq).map((r) => r.stored.position.toString());
    const logged = await db.selectFrom("events").select((eb) => eb.fn.countAll<string>().as("n")).where("conversation_id", "=", conversationId).where("position", "in", positions).executeTakeFirstOrThrow();
    assert.equal(Number(logged.n), 300, "every reported event is in the log");
  });

  it("counts a repeated add once, in one batch and across batches", async () => {
    const seq = await newMessage();
    const [alice] = members;
    const first = await Promise.all([reactions.submit(command("add", seq, alice!, HEART)), reactions.submit(command("add", seq, alice!, HEART)), reactions.submit(command("add", seq, alice!, HEART))]);
    const again = await reactions.submit(command("add", seq, alice!, HEART));

    // Concurrent calls have no order between them: whichever is written first adds it.
    assert.equal(first.filter((o) => o.changed).length, 1, "exactly one of the simultaneous adds adds it");
    assert.equal(again.changed, false);
    assert.deepEqual(await storedCount(seq, HEART), { count: 1n, rows: 1 });
    assert.equal(eventsFor(seq).length, 1);
    assert.deepEqual(again.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]), [[HEART, 1n, true]]);
  });

  it("does nothing when removing a reaction that is not there, and emits an event when removing one that is", async () => {
    const seq = await newMessage();
    const [alice, bob] = members;
    await reactions.submit(command("add", seq, bob!, THUMBS));
    const before = eventsFor(seq).length;

    const missing = await reactions.submit(command("remove", seq, alice!, THUMBS));
    assert.equal(missing.changed, false);
    assert.deepEqual(missing.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]), [[THUMBS, 1n, false]]);
    assert.equal(eventsFor(seq).length, before, "no event for a no-op");
    assert.deepEqual(await storedCount(seq, THUMBS), { count: 1n, rows: 1 });

    const removed = await reactions.submit(command("remove", seq, bob!, THUMBS));
    assert.equal(removed.changed, true);
    assert.deepEqual(removed.reactions, [], "a count of zero is not shown");
    const last = payload(eventsFor(seq).at(-1)!);
    assert.deepEqual([last.kind, last.userId, last.count], ["reactionRemoved", bob, 0n]);
    assert.deepEqual(await storedCount(seq, THUMBS), { count: 0n, rows: 0 });

    const twice = await reactions.submit(command("remove", seq, bob!, THUMBS));
    assert.equal(twice.changed, false);
    assert.equal(eventsFor(seq).length, before + 1);
  });

  it("fails only the commands of a non-member or on a missing message, not the rest of their batch", async () => {
    reactions = newBatcher({ maxInFlight: 1 });
    const seq = await newMessage();
    const [alice, bob, carol] = members;
    // The first command takes the only transaction slot; the next four queue up and are
    // written together by the second transaction.
    const blocker = reactions.submit(command("add", seq, carol!));
    const settled = await Promise.allSettled([
      reactions.submit(command("add", seq, alice!)),
      reactions.submit(command("add", seq, outsider)),
      reactions.submit(command("add", seq + 1000n, bob!)),
      reactions.submit(command("add", seq, bob!)),
    ]);
    await blocker;

    const [a, o, m, b] = settled;
    assert.equal(a.status, "fulfilled");
    assert.equal(b.status, "fulfilled");
    for (const failed of [o, m]) {
      assert.equal(failed.status, "rejected");
      assert.ok(failed.reason instanceof NotFoundError, String(failed.reason));
      assert.equal(failed.reason.message, "message not found", "does not say whether the conversation exists");
    }
    assert.deepEqual((b as PromiseFulfilledResult<ReactionOutcome>).value.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]), [[THUMBS, 3n, true]]);
    const events = eventsFor(seq);
    assert.deepEqual(events.map((e) => payload(e).userId), [carol, alice, bob]);
    assert.equal(events[1]!.batch, events[2]!.batch, "alice's and bob's reactions committed in the same transaction as the failures");
    assert.notEqual(events[0]!.batch, events[1]!.batch);
    assert.deepEqual(await storedCount(seq, THUMBS), { count: 3n, rows: 3 });
  });

  it("applies an add, remove and add of one reaction in one batch in order", async () => {
    reactions = newBatcher({ maxInFlight: 1 });
    const seq = await newMessage();
    const [alice, bob] = members;
    const blocker = reactions.submit(command("add", seq, bob!, FAMILY));
    const outcomes = await Promise.all([
      reactions.submit(command("add", seq, alice!, FAMILY)),
      reactions.submit(command("remove", seq, alice!, FAMILY)),
      reactions.submit(command("add", seq, alice!, FAMILY)),
      reactions.submit(command("add", seq, alice!, FAMILY)),
    ]);
    await blocker;

    assert.deepEqual(outcomes.map((o) => o.changed), [true, true, true, false]);
    const events = eventsFor(seq).map(payload).filter((e) => e.userId === alice);
    assert.deepEqual(events.map((e) => [e.kind, e.count]), [["reactionAdded", 2n], ["reactionRemoved", 1n], ["reactionAdded", 2n]]);
    assert.deepEqual(await storedCount(seq, FAMILY), { count: 2n, rows: 2 });
  });

  it("reads a page's reactions in one query: most used first, then by emoji, with the viewer's own marked", async () => {
    const first = await newMessage();
    const second = await newMessage();
    const [alice, bob, carol] = members;
    await Promise.all([
      reactions.submit(command("add", first, alice!, HEART)),
      reactions.submit(command("add", first, bob!, THUMBS)),
      reactions.submit(command("add", first, carol!, THUMBS)),
      reactions.submit(command("add", first, carol!, FAMILY)),
      reactions.submit(command("add", second, bob!, HEART)),
    ]);
    const rows = await findReactionSummaries(db, [first, second, first + 1000n].map((seq) => ({ conversationId, seq: seq.toString(), userId: alice! })));
    assert.deepEqual(
      rows.map((r) => [r.seq, r.emoji, r.count, r.reacted_by_me]),
      [
        [first.toString(), THUMBS, "2", false],
        // Ties go by code point: U+2764 (❤️) before U+1F468 (👨‍👩‍👧‍👦).
        [first.toString(), HEART, "1", true],
        [first.toString(), FAMILY, "1", false],
        [second.toString(), HEART, "1", false],
      ],
    );
  });

  it("shows reactions in GetMessage and ListMessages as the caller sees them, and takes AddReaction / RemoveReaction", async () => {
    const limits: Limits = { maxMessageBytes: 16384, maxEnvelopeBytes: 65536, maxGroupMembers: 1000, maxPageSize: 200, maxNameLength: 100, maxDescriptionLength: 1000, maxDisplayNameLength: 100 };
    const service = new MessageService(db, sends, reactions, limits, { log: database.log, publish() {}, flush: async () => {} });
    const [alice, bob] = members;
    const older = await newMessage();
    const seq = await newMessage();
    const added = await service.addReaction(create(AddReactionRequestSchema, { conversationId, seq, emoji: THUMBS }), contextFor(alice!));
    assert.equal(added.added, true);
    assert.deepEqual(added.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]), [[THUMBS, 1n, true]]);

    const got = await service.getMessage(create(GetMessageRequestSchema, { conversationId, seq }), contextFor(bob!));
    assert.deepEqual(got.message?.reactions.map((r) => [r.emoji, r.count, r.reactedByMe]), [[THUMBS, 1n, false]]);
    const listed = await service.listMessages(create(ListMessagesRequestSchema, { conversationId, pageSize: 2, startSeq: seq + 1n }), contextFor(alice!));
    assert.deepEqual(listed.messages.map((m) => [m.seq, m.reactions.map((r) => [r.emoji, r.count, r.reactedByMe])]), [[seq, [[THUMBS, 1n, true]]], [older, []]]);

    const removed = await service.removeReaction(create(RemoveReactionRequestSchema, { conversationId, seq, emoji: THUMBS }), contextFor(alice!));
    assert.equal(removed.removed, true);
    assert.deepEqual(removed.reactions, []);
    await assert.rejects(service.addReaction(create(AddReactionRequestSchema, { conversationId, seq, emoji: "ok" }), contextFor(alice!)), InvalidInputError);
    await assert.rejects(service.addReaction(create(AddReactionRequestSchema, { conversationId, seq, emoji: THUMBS }), contextFor(outsider)), NotFoundError);
  });
});

function contextFor(userId: string): HandlerContext {
  return createHandlerContext({
    service: MessageServiceDesc,
    method: MessageServiceDesc.method.addReaction,
    protocolName: "test",
    requestMethod: "POST",
    url: "http://localhost/",
    contextValues: createContextValues().set(callerKey, { userId, operator: false, service: false }),
  });
}
