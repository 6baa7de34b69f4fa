/**
 * Notifications (issue 5, "Notifications"): mentions, replies to your messages and being added
 * become notifications, which are listed, marked read, announced on the user's feed and put in
 * the push outbox exactly once, as each user's per-conversation settings say.
 *
 * The notifier works asynchronously, so the tests wait for what they expect. Negative checks
 * ("nothing for NONE") wait for a fence: a later notification of the same user, which the
 * notifier handles after the ones that must not exist. Push entries are read from the JetStream
 * push stream in PostgreSQL mode (real NATS), from the server's in-process outbox in embedded mode.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { NotificationKind, NotificationLevel, type Notification } from "../../gen/parley/v1/notification_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createGroup, ms, sendText } from "../helpers/fixtures.ts";
import { eventually, isMessage, openLiveFeed, type Feed } from "../helpers/feed.ts";
import { sharedRealtimeServer } from "../helpers/realtime.ts";
import { remove, send } from "./support/messages.ts";
import { allNotifications, describeNotification, kindOf } from "./support/notifications.ts";
import { walkPages } from "./support/pages.ts";
import { PushOutbox, type PushRecord } from "./support/push-outbox.ts";
import { newConversationKey, seal } from "./support/sealed.ts";

/** How long the notifier may take to catch up in these tests. */
const NOTIFY_DEADLINE_MS = 15_000;

describe("Notifications", () => {
  let server: TestServer;
  let outbox: PushOutbox | null = null;
  const feeds: Feed[] = [];
  before(async () => {
    server = await sharedRealtimeServer();
    outbox = await PushOutbox.open(server.env);
  });
  after(async () => {
    await outbox?.close();
  });
  afterEach(() => {
    for (const f of feeds.splice(0)) f.close();
  });

  /** Waits until the user has a notification matching `match`; returns the user's whole list. */
  async function waitForNotification(clients: Clients, match: (n: Notification) => boolean, what: string): Promise<Notification[]> {
    let list: Notification[] = [];
    await eventually(async () => {
      list = await allNotifications(clients);
      return list.some(match);
    }, `notified of ${what}`, NOTIFY_DEADLINE_MS);
    return list;
  }

  /**
   * Asserts the user's push entries are exactly one per notification id given. Waits for the
   * expected ones first.
   */
  async function assertPushedExactly(userId: string, ids: readonly string[], what: string): Promise<void> {
    // On NATS, read the stream itself, headers included; embedded, ask the server's outbox.
    const read = async (): Promise<PushRecord[]> =>
      outbox
        ? outbox.entriesFor(userId)
        : (await server.pushEntries(userId)).map((entry) => ({ subject: "", msgId: entry.notification?.id ?? "", entry }));
    let entries = await read();
    await eventually(async () => {
      entries = await read();
      const have = new Set(entries.map((e) => e.msgId));
      return ids.every((id) => have.has(id));
    }, `${what}: the push entries of ${ids.length} notification(s) in the outbox`, NOTIFY_DEADLINE_MS).catch((err: unknown) => {
      throw new Error(`${String(err)}; entries: ${JSON.stringify(entries.map((e) => e.msgId))}, wanted ${JSON.stringify(ids)}`);
    });
    assert.deepEqual(entries.map((e) => e.msgId).sort(), [...ids].sort(), `${what}: exactly one push entry per pushed notification, and no others`);
    for (const e of entries) {
      assert.equal(e.entry.recipientId, userId, `${what}: recipient_id`);
      assert.equal(e.entry.notification?.id, e.msgId, `${what}: the entry carries its notification, Nats-Msg-Id = its id`);
      assert.equal(e.entry.notification?.message, undefined, `${what}: a push entry carries no message preview`);
    }
  }

  /** Notifications other than being added when a conversation was created (not part of these checks). */
  const notCreation = (conversationIds: readonly string[]) => (n: Notification) =>
    !(n.kind === NotificationKind.ADDED_TO_CONVERSATION && conversationIds.includes(n.conversationId));

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("notifies mentions, replies to my messages and being added, once each and never for my own actions: listed, on my feed, pushed", async () => {
        const [a, x, y, z] = await newUsers(server, 4, "notify");
        const A = server.clientsFor(a!, protocol);
        const X = server.clientsFor(x!, protocol);
        const Y = server.clientsFor(y!, protocol);
        const fx = await openLiveFeed(X, { label: `x/${protocol}` });
        feeds.push(fx);
        const g = await createGroup(A, [x!, y!], "g"); // x and y added by a
        const h = await createGroup(Y, [a!, z!], "h"); // a and z added by y

        const question = await sendText(X, g.id, "x asks something"); // 1
        const reply = await send(A, g.id, { body: "a answers", replyToSeq: question.seq }); // 2: reply
        const mention = await send(Y, g.id, { body: "@x look", mentionUserIds: [x!] }); // 3: mention
        const everyone = await send(A, g.id, { body: "@everyone meeting", mentionEveryone: true }); // 4: everyone
        const both = await send(Y, g.id, { body: "@x replying too", replyToSeq: question.seq, mentionUserIds: [x!] }); // 5: one mention
        await sendText(A, g.id, "nothing for anyone"); // 6
        await send(X, g.id, { body: "note to self", mentionUserIds: [x!] }); // 7: own mention
        await send(X, g.id, { body: "replying to myself", replyToSeq: question.seq }); // 8: own reply
        await Y.conversations.addMembers({ conversationId: h.id, userIds: [x!] }); // x added by y
        const fence = await send(Y, h.id, { body: "@x fence", mentionUserIds: [x!] });

        const mine = await waitForNotification(X, (n) => n.conversationId === h.id && n.messageSeq === fence.seq, "the fence mention");
        assert.deepEqual(
          mine.map((n) => `${n.conversationId === g.id ? "g" : "h"}:${describeNotification(n)}`),
          [
            `h:mention#${fence.seq} by ${y}`,
            `h:added by ${y}`,
            `g:mention#${both.seq} by ${y}`,
            `g:mention(everyone)#${everyone.seq} by ${a}`,
            `g:mention#${mention.seq} by ${y}`,
            `g:reply#${reply.seq} by ${a}`,
            `g:added by ${a}`,
          ],
          "exactly these notifications, newest first",
        );
        for (const n of mine) {
          assert.equal(n.read, false, "new notifications are unread");
          assert.ok(Math.abs(ms(n.createdAt) - Date.now()) < 5 * 60_000, "created_at is about now");
          assert.ok(n.id, "an id");
        }
        assert.equal(mine[1]!.messageSeq, 0n, "being added names no message");
        const mentionPreview = mine.find((n) => n.messageSeq === mention.seq && n.conversationId === g.id)?.message;
        assert.equal(mentionPreview?.content.case === "text" ? mentionPreview.content.value : "", "@x look", "the list previews the message");

        // Each one is an event on x's own feed, addressed to x alone, once.
        await fx.waitUntil(
          () => mine.every((n) => fx.events.some((e) => e.kind.case === "notificationCreated" && e.kind.value.notification?.id === n.id)),
          "a notification_created event for every notification",
        );
        const announced = fx.events.filter((e) => e.kind.case === "notificationCreated");
        for (const e of announced) {
          assert.equal(e.conversationId, "", "a notification event belongs to no conversation's feed");
          assert.ok(e.cursor, "a stored event with a cursor");
        }
        const announcedIds = announced.map((e) => (e.kind.case === "notificationCreated" ? e.kind.value.notification?.id : ""));
        assert.deepEqual([...announcedIds].sort(), mine.map((n) => n.id).sort(), "the feed announced exactly the listed notifications, each once");

        await assertPushedExactly(x!, mine.map((n) => n.id), "x");

        // y: added to g and mentioned as everyone; a: added to h, and nothing for its own @everyone;
        // z: added to h, nothing else.
        const fenceY = await send(A, g.id, { body: "@y fence", mentionUserIds: [y!] });
        const forY = await waitForNotification(Y, (n) => n.messageSeq === fenceY.seq, "the fence mention of y");
        assert.deepEqual(forY.map(describeNotification), [`mention#${fenceY.seq} by ${a}`, `mention(everyone)#${everyone.seq} by ${a}`, `added by ${a}`], "y");
        const fenceA = await send(Y, h.id, { body: "@a fence", mentionUserIds: [a!] });
        const forA = await waitForNotification(A, (n) => n.messageSeq === fenceA.seq, "the fence mention of a");
        assert.deepEqual(forA.map(describeNotification), [`mention#${fenceA.seq} by ${y}`, `added by ${y}`], "a");
        assert.deepEqual((await allNotifications(server.clientsFor(z!, protocol))).map(describeNotification), [`added by ${y}`], "z");
      });

      it("pages notifications newest first, filters unread, and marks them read by id or all at once", async () => {
        const [a, x, y] = await newUsers(server, 3, "notifpage");
        const A = server.clientsFor(a!, protocol);
        const X = server.clientsFor(x!, protocol);
        const g = await createGroup(A, [x!, y!]);
        const sent: bigint[] = [];
        for (let i = 0; i < 7; i++) sent.push((await send(A, g.id, { body: `@x #${i}`, mentionUserIds: [x!] })).seq);
        const last = sent[6]!;
        await waitForNotification(X, (n) => n.messageSeq === last, "the seventh mention");

        const mentions = (n: Notification) => n.kind === NotificationKind.MENTION;
        const pages = await walkPages(3, async (pageToken) => {
          const res = await X.notifications.listNotifications({ pageSize: 3, pageToken });
          return { items: res.notifications, nextPageToken: res.nextPageToken };
        });
        const walked = pages.flat().filter(mentions);
        assert.deepEqual(walked.map((n) => n.messageSeq), [...sent].reverse(), "every mention once, newest first across pages");
        for (let i = 1; i < walked.length; i++) assert.ok(ms(walked[i - 1]!.createdAt) >= ms(walked[i]!.createdAt), "created_at never increases");

        const first = await X.notifications.listNotifications({ pageSize: 100 });
        const unreadBefore = first.unreadCount;
        assert.equal(first.notifications.filter((n) => !n.read).length, Number(unreadBefore), "unread_count counts the unread ones");
        const two = walked.slice(0, 2).map((n) => n.id);
        const marked = await X.notifications.markNotificationsRead({ notificationIds: two });
        assert.equal(marked.marked, 2n);
        assert.equal(marked.unreadCount, unreadBefore - 2n);
        const again = await X.notifications.markNotificationsRead({ notificationIds: two });
        assert.equal(again.marked, 0n, "marking read twice changes nothing");

        // Someone else's notification ids are ignored, and stay unread for their owner.
        const Y = server.clientsFor(y!, protocol);
        const forY = await send(A, g.id, { body: "@y", mentionUserIds: [y!] });
        const yList = await waitForNotification(Y, (n) => n.messageSeq === forY.seq, "the mention of y");
        const yId = yList.find((n) => n.messageSeq === forY.seq)!.id;
        const foreign = await X.notifications.markNotificationsRead({ notificationIds: [yId, randomUUID()] });
        assert.equal(foreign.marked, 0n, "foreign and unknown ids are ignored");
        assert.equal((await Y.notifications.listNotifications({})).notifications.find((n) => n.id === yId)?.read, false, "y's stays unread");

        const unread = await X.notifications.listNotifications({ unreadOnly: true, pageSize: 100 });
        assert.ok(unread.notifications.every((n) => !n.read), "unread_only lists unread ones only");
        assert.ok(!unread.notifications.some((n) => two.includes(n.id)), "the marked ones are gone from unread_only");
        assert.equal(unread.notifications.length, Number(unreadBefore - 2n));
        const all = await X.notifications.markNotificationsRead({ all: true });
        assert.equal(all.marked, unreadBefore - 2n);
        assert.equal(all.unreadCount, 0n);
        const after = await X.notifications.listNotifications({ pageSize: 100 });
        assert.ok(after.notifications.every((n) => n.read), "all read");
        assert.equal(after.unreadCount, 0n);
      });
    });
  }

  it("honours ALL, MENTIONS_ONLY, NONE and mute: exactly the right notifications and push entries", async function () {
    this.timeout(60_000);
    const [a, x, y] = await newUsers(server, 3, "levels");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const inOneHour = timestampFromMs(Date.now() + 3_600_000);
    const anHourAgo = timestampFromMs(Date.now() - 3_600_000);
    const cases = [
      { name: "ALL", level: NotificationLevel.ALL, mutedUntil: undefined, kinds: ["reply", "mention", "mention(everyone)"], pushed: true },
      { name: "MENTIONS_ONLY", level: NotificationLevel.MENTIONS_ONLY, mutedUntil: undefined, kinds: ["mention", "mention(everyone)"], pushed: true },
      { name: "NONE", level: NotificationLevel.NONE, mutedUntil: undefined, kinds: [], pushed: false },
      { name: "ALL, muted for an hour", level: NotificationLevel.ALL, mutedUntil: inOneHour, kinds: ["reply", "mention", "mention(everyone)"], pushed: false },
      { name: "MENTIONS_ONLY, muted", level: NotificationLevel.MENTIONS_ONLY, mutedUntil: inOneHour, kinds: ["mention", "mention(everyone)"], pushed: false },
      { name: "ALL, mute expired an hour ago", level: NotificationLevel.ALL, mutedUntil: anHourAgo, kinds: ["reply", "mention", "mention(everyone)"], pushed: true },
    ];
    const groups: { name: string; id: string; kinds: string[]; pushed: boolean }[] = [];
    for (const c of cases) groups.push({ name: c.name, id: (await createGroup(A, [x!, y!], c.name)).id, kinds: c.kinds, pushed: c.pushed });
    // Being added to each group notified x under the default settings: let that happen first,
    // so the settings below only govern what comes after them.
    const isAddedToAll = (list: Notification[]) => groups.every((g) => list.some((n) => n.conversationId === g.id && n.kind === NotificationKind.ADDED_TO_CONVERSATION));
    for (const clients of [X, server.clientsFor(y!, "grpc")]) {
      await eventually(async () => isAddedToAll(await allNotifications(clients)), "notified of being added to every group", NOTIFY_DEADLINE_MS);
    }
    for (const [i, c] of cases.entries()) {
      const id = groups[i]!.id;
      const set = await X.notifications.setNotificationSettings({ conversationId: id, level: c.level, mutedUntil: c.mutedUntil });
      assert.equal(set.settings?.level, c.level, `${c.name}: level`);
      const got = await server.clientsFor(x!, "grpc").notifications.getNotificationSettings({ conversationId: id });
      assert.equal(got.settings?.level, c.level, `${c.name}: level read back`);
      if (c.mutedUntil === inOneHour) assert.equal(ms(got.settings?.mutedUntil), ms(inOneHour), `${c.name}: muted_until read back`);
    }
    const fx = await openLiveFeed(X, { label: "x" });
    feeds.push(fx);
    for (const g of groups) {
      const mine = await sendText(X, g.id, "x writes");
      await send(A, g.id, { body: "a replies", replyToSeq: mine.seq });
      await send(A, g.id, { body: "@x", mentionUserIds: [x!] });
      await send(A, g.id, { body: "@everyone", mentionEveryone: true });
      await sendText(A, g.id, "plain");
    }
    const fenceGroup = await createGroup(A, [x!, y!], "fence");
    const fence = await send(A, fenceGroup.id, { body: "@x @y fence", mentionUserIds: [x!, y!] });
    const all = await waitForNotification(X, (n) => n.conversationId === fenceGroup.id && n.messageSeq === fence.seq, "the fence");
    const list = all.filter(notCreation([...groups.map((g) => g.id), fenceGroup.id]));

    const problems: string[] = [];
    for (const g of groups) {
      const kinds = list.filter((n) => n.conversationId === g.id).map(kindOf).reverse();
      if (JSON.stringify(kinds) !== JSON.stringify(g.kinds)) problems.push(`${g.name}: notified ${JSON.stringify(kinds)}, expected ${JSON.stringify(g.kinds)}`);
    }
    assert.deepEqual(problems, [], "each setting produced exactly its notifications");

    // The feed announces every recorded notification (muted ones too) and nothing for NONE.
    await fx.waitUntil(() => list.every((n) => fx.events.some((e) => e.kind.case === "notificationCreated" && e.kind.value.notification?.id === n.id)), "every notification on the feed");
    const announced = fx.events.filter((e) => e.kind.case === "notificationCreated").map((e) => (e.kind.case === "notificationCreated" ? e.kind.value.notification?.conversationId : ""));
    const none = groups.find((g) => g.name === "NONE")!;
    assert.ok(!announced.includes(none.id), "nothing announced for a conversation set to NONE");

    // Pushed: being added (under the defaults), the fence group, and the groups whose settings push.
    const pushed = (n: Notification) =>
      n.kind === NotificationKind.ADDED_TO_CONVERSATION || n.conversationId === fenceGroup.id || groups.find((g) => g.id === n.conversationId)?.pushed === true;
    await assertPushedExactly(x!, all.filter(pushed).map((n) => n.id), "x across the settings");

    // y kept the defaults (ALL, not muted) everywhere: everything, pushed.
    const Y = server.clientsFor(y!, "grpc");
    const forY = await waitForNotification(Y, (n) => n.conversationId === fenceGroup.id && n.messageSeq === fence.seq, "the fence, for y");
    for (const g of groups) {
      const kinds = forY.filter((n) => n.conversationId === g.id).map(kindOf).reverse();
      assert.deepEqual(kinds, ["added", "mention(everyone)"], `y in ${g.name}: whatever x chose`);
    }
    await assertPushedExactly(y!, forY.map((n) => n.id), "y");
  });

  it("reads and validates settings: ALL and unmuted by default, members only, UNSPECIFIED rejected", async () => {
    const [a, x, y, outsider] = await newUsers(server, 4, "settings");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(server.clientsFor(a!, "grpc"), [x!, y!]);
    const fresh = await X.notifications.getNotificationSettings({ conversationId: g.id });
    assert.equal(fresh.settings?.level, NotificationLevel.ALL, "ALL by default");
    assert.equal(fresh.settings?.mutedUntil, undefined, "not muted by default");
    assert.equal(fresh.settings?.conversationId, g.id);
    await expectInvalidArgument(X.notifications.setNotificationSettings({ conversationId: g.id, level: NotificationLevel.UNSPECIFIED }), "level");
    const O = server.clientsFor(outsider!, "grpc");
    await expectCode(O.notifications.getNotificationSettings({ conversationId: g.id }), Code.NotFound);
    await expectCode(O.notifications.setNotificationSettings({ conversationId: g.id, level: NotificationLevel.NONE }), Code.NotFound);

    const muted = await X.notifications.setNotificationSettings({ conversationId: g.id, level: NotificationLevel.MENTIONS_ONLY, mutedUntil: timestampFromMs(Date.now() + 60_000) });
    assert.ok(muted.settings?.mutedUntil, "muted");
    const unmuted = await X.notifications.setNotificationSettings({ conversationId: g.id, level: NotificationLevel.MENTIONS_ONLY });
    assert.equal(unmuted.settings?.mutedUntil, undefined, "setting without muted_until unmutes");
    assert.equal((await X.notifications.getNotificationSettings({ conversationId: g.id })).settings?.level, NotificationLevel.MENTIONS_ONLY);
    assert.equal((await server.clientsFor(y!, "grpc").notifications.getNotificationSettings({ conversationId: g.id })).settings?.level, NotificationLevel.ALL, "settings are per user");
  });

  it("previews a notification's message as it is now: deleted once deleted", async () => {
    const [a, x, y] = await newUsers(server, 3, "notifdel");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(A, [x!, y!]);
    const m = await send(A, g.id, { body: "@x you won't believe this", mentionUserIds: [x!] });
    await waitForNotification(X, (n) => n.messageSeq === m.seq, "the mention");
    await remove(A, g.id, m.seq);
    const n = (await allNotifications(X)).find((n) => n.conversationId === g.id && n.messageSeq === m.seq);
    assert.deepEqual(n?.message?.content, { case: "deleted", value: true }, "the preview says deleted, without the text");
  });

  it("notifies a mention inside an encrypted message, previewed as encrypted", async () => {
    const [a, x, y] = await newUsers(server, 3, "notifsealed");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(A, [x!, y!]);
    const key = newConversationKey();
    const m = await send(A, g.id, { body: seal(key, "@x the code is 4711"), mentionUserIds: [x!] });
    const list = await waitForNotification(X, (n) => n.conversationId === g.id && n.messageSeq === m.seq, "the encrypted mention");
    const n = list.find((n) => n.conversationId === g.id && n.messageSeq === m.seq)!;
    assert.equal(kindOf(n), "mention");
    assert.deepEqual(n.message?.content, { case: "encrypted", value: true }, "the server has no text to show");
    await assertPushedExactly(x!, list.map((n) => n.id), "x");
  });

  it("notifies once when a message both mentions me by name and everyone, and replies to me", async () => {
    const [a, x, y] = await newUsers(server, 3, "notifonce");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(A, [x!, y!]);
    const mine = await sendText(X, g.id, "x's message");
    const m = await send(A, g.id, { body: "@x @everyone re", mentionUserIds: [x!], mentionEveryone: true, replyToSeq: mine.seq });
    const fence = await send(A, g.id, { body: "@x fence", mentionUserIds: [x!] });
    const list = await waitForNotification(X, (n) => n.messageSeq === fence.seq, "the fence");
    const forMessage = list.filter((n) => n.conversationId === g.id && n.messageSeq === m.seq);
    assert.deepEqual(forMessage.map(kindOf), ["mention"], "one notification: a mention by name");
    await assertPushedExactly(x!, list.map((n) => n.id), "x");
  });

  it("does not notify a user who left of replies to their old messages", async () => {
    const [a, x, y] = await newUsers(server, 3, "notifleft");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(A, [x!, y!]);
    const old = await sendText(X, g.id, "x was here");
    await X.conversations.removeMember({ conversationId: g.id, userId: x! });
    const reply = await send(A, g.id, { body: "replying to someone gone", replyToSeq: old.seq });
    const other = await createGroup(A, [x!, y!], "fence");
    const fence = await send(A, other.id, { body: "@x fence", mentionUserIds: [x!] });
    const list = await waitForNotification(X, (n) => n.messageSeq === fence.seq && n.conversationId === other.id, "the fence");
    assert.deepEqual(list.filter((n) => n.conversationId === g.id && n.messageSeq === reply.seq).map(describeNotification), [], "nothing about a conversation x left");
  });

  it("replays notification_created to a client resuming from its cursor after being offline", async () => {
    const [a, x, y] = await newUsers(server, 3, "notifreplay");
    const A = server.clientsFor(a!, "grpc");
    const X = server.clientsFor(x!, "connect");
    const g = await createGroup(A, [x!, y!]);
    const first = await openLiveFeed(X, { label: "x online" });
    feeds.push(first);
    const hello = await sendText(A, g.id, "hello");
    await first.waitForEvent(isMessage(g.id, hello.seq), "a message while online");
    const cursor = first.lastCursor;
    first.close();

    const m = await send(A, g.id, { body: "@x while you were away", mentionUserIds: [x!] });
    const list = await waitForNotification(X, (n) => n.messageSeq === m.seq && n.conversationId === g.id, "the mention");
    const id = list.find((n) => n.messageSeq === m.seq && n.conversationId === g.id)!.id;
    const back = await openLiveFeed(server.clientsFor(x!, "grpc"), { cursor, label: "x back" });
    feeds.push(back);
    const { event } = await back.waitForEvent((e) => e.kind.case === "notificationCreated" && e.kind.value.notification?.id === id, "the replayed notification_created");
    assert.ok(event.cursor, "a replayable event has a cursor");
    assert.equal(back.events.filter((e) => e.kind.case === "notificationCreated" && e.kind.value.notification?.id === id).length, 1, "once");
  });
});
