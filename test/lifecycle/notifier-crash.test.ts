/**
 * The notifier killed mid-batch (issue 5, "Notifications"): a node runs as a child process and
 * is SIGKILLed while it is turning a burst of @everyone mentions into notifications and push
 * entries; a fresh node on the same PostgreSQL and NATS takes over. In the end every member has
 * exactly one notification and exactly one push entry per mention: none missing, none doubled.
 * Also two nodes running the notifier side by side. Needs DATABASE_URL and NATS (a real push
 * stream); skipped otherwise.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { NotificationKind } from "../../gen/parley/v1/notification_pb.ts";
import { createTestDatabase, newUsers, type FreshDatabase, type TestServer } from "../helpers/test-server.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import {
  deleteNatsState,
  multiNodeAvailable,
  natsPrefix,
  spawnNode,
  startCluster,
  testNatsUrl,
  type Cluster,
  type NodeProcess,
} from "../helpers/realtime.ts";
import { send } from "./support/messages.ts";
import { allNotifications } from "./support/notifications.ts";
import { PushOutbox, type PushRecord } from "./support/push-outbox.ts";

const MEMBERS = 80;
const MENTIONS = 15;

describe("the notifier killed with SIGKILL in the middle of a batch", function () {
  let database: FreshDatabase | null = null;
  let prefix = "";
  let outbox: PushOutbox | null = null;
  const nodes: NodeProcess[] = [];
  let env: Record<string, string> = {};

  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    database = await createTestDatabase();
    prefix = natsPrefix();
    env = {
      DATABASE_URL: database!.url,
      NATS_URL: testNatsUrl()!,
      NATS_PREFIX: prefix,
      JWT_SECRET: randomBytes(32).toString("hex"),
    };
    outbox = await PushOutbox.open(env);
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed") return;
    for (const [i, n] of nodes.entries()) console.error(`--- node ${i + 1} output (tail) ---\n${n.output().slice(-3000)}`);
  });
  after(async () => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await outbox?.close();
    await database?.drop();
    if (prefix) await deleteNatsState(prefix).catch(() => undefined);
  });

  it("leaves exactly one notification and one push entry per mention and member after a restart", async function () {
    this.timeout(120_000);
    const first = await spawnNode(env, "node 1");
    nodes.push(first);
    const [admin, ...members] = await newUsers(first, MEMBERS, "burst");
    const group = await createGroup(first.clientsFor(admin!, "grpc"), members);
    // Being added to the group notifies every member: let those be pushed before the burst.
    let before = 0;
    await eventually(async () => (before = await outbox!.count()) >= members.length, "the push entries of being added", 30_000);

    const A = first.clientsFor(admin!, "grpc");
    const mentions = await Promise.all(
      Array.from({ length: MENTIONS }, (_, i) => send(A, group.id, { body: `@everyone round ${i}`, mentionEveryone: true })),
    );
    const expected = MENTIONS * members.length;

    // SIGKILL as soon as the first push entry of the burst is out, so the rest is still to do.
    // Polled tightly (no backoff): a fast notifier must not finish the burst between two looks.
    let atKill = 0;
    for (const deadline = Date.now() + 15_000; (atKill = (await outbox!.count()) - before) === 0; ) {
      assert.ok(Date.now() < deadline, "the first push entry of the burst within 15 s");
      await new Promise((r) => setTimeout(r, 2));
    }
    first.child.kill("SIGKILL");
    const exit = await first.exited;
    assert.equal(exit.signal, "SIGKILL");
    atKill = (await outbox!.count()) - before;
    assert.ok(atKill < expected, `the node died mid-batch (${atKill} of ${expected} push entries were out); make the burst bigger if this fails`);

    const second = await spawnNode(env, "node 2");
    nodes.push(second);
    let entries: PushRecord[] = [];
    const burst = (e: PushRecord) => e.entry.notification?.conversationId === group.id && e.entry.notification.kind === NotificationKind.MENTION;
    await eventually(async () => {
      entries = (await outbox!.allEntries()).filter(burst);
      return entries.length >= expected;
    }, `all ${expected} push entries after the restart`, 60_000).catch((err: unknown) => {
      throw new Error(`${String(err)}: ${entries.length} of ${expected} (${atKill} before the kill)`);
    });
    // Anything doubled would be published right behind: give it a moment, then read again.
    await new Promise((r) => setTimeout(r, 1_500));
    entries = (await outbox!.allEntries()).filter(burst);

    const byId = new Map<string, number>();
    for (const e of entries) byId.set(e.msgId, (byId.get(e.msgId) ?? 0) + 1);
    assert.deepEqual([...byId].filter(([, n]) => n > 1).slice(0, 5), [], "no notification pushed twice");
    const byRecipientSeq = new Map<string, number>();
    for (const e of entries) {
      const k = `${e.entry.recipientId}#${e.entry.notification?.messageSeq}`;
      byRecipientSeq.set(k, (byRecipientSeq.get(k) ?? 0) + 1);
    }
    const missing: string[] = [];
    const doubled: string[] = [];
    for (const member of members) {
      for (const m of mentions) {
        const n = byRecipientSeq.get(`${member}#${m.seq}`) ?? 0;
        if (n === 0) missing.push(`${member}#${m.seq}`);
        if (n > 1) doubled.push(`${member}#${m.seq}×${n}`);
      }
    }
    assert.deepEqual(missing.slice(0, 10), [], `no push entry missing (${missing.length} missing)`);
    assert.deepEqual(doubled.slice(0, 10), [], `no mention pushed twice to one member (${doubled.length} doubled)`);
    assert.equal(entries.length, expected, "exactly one push entry per mention and member");
    assert.ok(!entries.some((e) => e.entry.recipientId === admin), "the admin is not notified of its own mentions");

    // The notifications themselves: exactly one per mention, and the very ones that were pushed.
    const pushedIds = new Set(entries.map((e) => e.msgId));
    const problems: string[] = [];
    await Promise.all(
      members.map(async (member) => {
        const list = (await allNotifications(second.clientsFor(member, "connect"))).filter(
          (n) => n.conversationId === group.id && n.kind === NotificationKind.MENTION,
        );
        const seqs = list.map((n) => n.messageSeq).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
        if (JSON.stringify(seqs.map(String)) !== JSON.stringify(mentions.map((m) => String(m.seq)).sort((x, y) => Number(x) - Number(y)))) {
          problems.push(`${member}: notified of ${JSON.stringify(seqs.map(String))}`);
        }
        for (const n of list) if (!pushedIds.has(n.id)) problems.push(`${member}: notification ${n.id} was not the one pushed`);
      }),
    );
    assert.deepEqual(problems.slice(0, 10), [], "every member has exactly one notification per mention, the pushed one");
  });
});

describe("the notifier on two nodes at once", function () {
  let cluster: Cluster | null = null;
  let outbox: PushOutbox | null = null;
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2);
    outbox = await PushOutbox.open(cluster.nodes[0]!.env);
  });
  after(async () => {
    await outbox?.close();
    await cluster?.stop();
  });

  it("notifies and pushes each mention once, whichever node takes it", async function () {
    this.timeout(60_000);
    const [n1, n2] = cluster!.nodes as [TestServer, TestServer];
    const [admin, ...members] = await newUsers(n1, 20, "pair");
    const group = await createGroup(n1.clientsFor(admin!, "grpc"), members);
    // Mentions sent on both nodes at once.
    const mentions = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        send((i % 2 ? n1 : n2).clientsFor(admin!, i % 2 ? "grpc" : "connect"), group.id, { body: `@everyone ${i}`, mentionEveryone: true }),
      ),
    );
    const expectedPerMember = mentions.length + 1; // and being added
    let entries: PushRecord[] = [];
    await eventually(async () => (entries = (await outbox!.allEntries()).filter((e) => e.entry.notification?.conversationId === group.id)).length >= expectedPerMember * members.length,
      "every push entry", 30_000);
    await new Promise((r) => setTimeout(r, 1_000));
    entries = (await outbox!.allEntries()).filter((e) => e.entry.notification?.conversationId === group.id);
    assert.equal(entries.length, expectedPerMember * members.length, "one push entry per member and mention (and being added)");
    assert.equal(new Set(entries.map((e) => e.msgId)).size, entries.length, "no notification pushed twice");
    const problems: string[] = [];
    await Promise.all(members.map(async (member, i) => {
      const list = (await allNotifications((i % 2 ? n1 : n2).clientsFor(member))).filter((n) => n.conversationId === group.id);
      const seqs = list.filter((n) => n.kind === NotificationKind.MENTION).map((n) => Number(n.messageSeq)).sort((x, y) => x - y);
      if (seqs.join() !== mentions.map((m) => Number(m.seq)).sort((x, y) => x - y).join() || list.length !== expectedPerMember) {
        problems.push(`${member}: ${list.length} notifications, mentions ${seqs.join()}`);
      }
    }));
    assert.deepEqual(problems, [], "each member: one notification per mention, and one for being added");
  });
});
