/**
 * What the moderation tests share: the server (the shared story server: a real-time node with a
 * data directory of its own, so stories and uploads work), operators, small builders for
 * reports and restrictions, what a restricted user is told in an error's details, and a reader
 * of those details that shares no code with the server (for the grpc-js client).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import {
  AccountRestrictionSchema,
  ModerationAction,
  ReportReason,
  ReportStatus,
  RestrictionKind,
  type AccountRestriction,
  type AuditEntry,
  type Report,
  type ReportTarget,
} from "../../gen/parley/v1/moderation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { ReportTargetKind } from "../../gen/parley/v1/admin_service_pb.ts";
import { EndReason, type StreamEnding, type SubscribeResponse } from "../../gen/parley/v1/event_service_pb.ts";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { NotificationLevel } from "../../gen/parley/v1/notification_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { newUsers, uniqueId, type Clients, type Protocol, type RemoteServer } from "../helpers/test-server.ts";
import { createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { describeError, endReasonName, openFeed, type Feed } from "../helpers/feed.ts";
import { fixture, postStory, sharedStoryServer, type StoryServer } from "../stories/support.ts";

export { sharedStoryServer as moderationServer, type StoryServer as ModerationServer };

/** An operator: a user whose token carries roles ["operator"]. */
export interface Operator {
  readonly id: string;
  readonly clients: Clients;
}

/** A fresh operator (its own id, so the audit log can be filtered to what this test did). */
export function newOperator(server: RemoteServer, protocol: Protocol, prefix = "op"): Operator {
  const id = uniqueId(prefix);
  return { id, clients: server.clientsFor(id, protocol, { roles: ["operator"] }) };
}

/** A string found nowhere else, to look for later (in streams, errors or the database). */
export function marker(label: string): string {
  return `${label}-${randomBytes(6).toString("hex")}`;
}

/**
 * A time `seconds` from now, rounded up to a whole second, so it compares exactly whatever
 * precision the server keeps times with.
 */
export function secondsFromNow(seconds: number): Timestamp {
  return timestampFromMs(Math.ceil((Date.now() + seconds * 1000) / 1000) * 1000);
}

export function msOf(ts: Timestamp | undefined, what: string): number {
  assert.ok(ts, `${what} is set`);
  return timestampMs(ts);
}

export const messageTarget = (conversationId: string, seq: bigint): ReportTarget["target"] => ({
  case: "message",
  value: { $typeName: "parley.v1.MessageRef", conversationId, seq },
});
export const storyTarget = (storyId: string): ReportTarget["target"] => ({ case: "storyId", value: storyId });
export const userTarget = (userId: string): ReportTarget["target"] => ({ case: "userId", value: userId });

/** CreateReport as the reporter's clients; returns the report id. */
export async function report(
  clients: Clients,
  target: ReportTarget["target"],
  reason: ReportReason = ReportReason.SPAM,
  note = "",
): Promise<string> {
  const res = await clients.reports.createReport({ target: { target }, reason, note });
  assert.ok(res.reportId, "CreateReport returns a report id");
  assert.ok(res.createdAt, "CreateReport returns created_at");
  return res.reportId;
}

/** GetReport as an operator. */
export async function getReport(op: Operator, reportId: string): Promise<Report> {
  const res = await op.clients.admin.getReport({ reportId });
  assert.ok(res.report, "GetReport returns the report");
  return res.report;
}

/** A response page of any of the list RPCs. */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** Follows next_page_token to the end; returns the pages. Fails on a token that never ends. */
export async function walkPages<T>(fetch: (pageToken: string) => Promise<Page<T>>, maxPages = 1_000): Promise<T[][]> {
  const pages: T[][] = [];
  let token = "";
  for (let i = 0; i < maxPages; i++) {
    const page = await fetch(token);
    pages.push(page.items);
    if (!page.nextPageToken) return pages;
    token = page.nextPageToken;
  }
  assert.fail(`still a next_page_token after ${maxPages} pages`);
}

/** Every report about the user (any status), oldest first, as ListReports pages them. */
export async function reportsAbout(
  op: Operator,
  reportedUserId: string,
  extra: { status?: ReportStatus; reason?: ReportReason; targetKind?: ReportTargetKind } = {},
): Promise<Report[]> {
  const pages = await walkPages(async (pageToken) => {
    const res = await op.clients.admin.listReports({ reportedUserId, pageSize: 100, pageToken, ...extra });
    return { items: res.reports, nextPageToken: res.nextPageToken };
  });
  return pages.flat();
}

/** Every audit entry (newest first) matching the filter. */
export async function auditEntries(op: Operator, filter: { operatorId?: string; targetUserId?: string }, pageSize = 100): Promise<AuditEntry[]> {
  const pages = await walkPages(async (pageToken) => {
    const res = await op.clients.admin.listAuditLog({ ...filter, pageSize, pageToken });
    return { items: res.entries, nextPageToken: res.nextPageToken };
  });
  return pages.flat();
}

/** Every restriction in force, all pages. */
export async function allRestrictions(op: Operator, pageSize = 100): Promise<AccountRestriction[]> {
  const pages = await walkPages(async (pageToken) => {
    const res = await op.clients.admin.listRestrictions({ pageSize, pageToken });
    return { items: res.restrictions, nextPageToken: res.nextPageToken };
  });
  return pages.flat();
}

/** What a restricted user should be told. */
export interface ExpectedRestriction {
  userId: string;
  kind: RestrictionKind;
  /** For a suspension: its end (ms since the epoch). */
  untilMs?: number;
  /** The operator's words. */
  reason: string;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The ErrorInfo reason a restricted user gets. */
export function restrictionReason(kind: RestrictionKind): string {
  return kind === RestrictionKind.BANNED ? "ACCOUNT_BANNED" : "ACCOUNT_SUSPENDED";
}

/**
 * Asserts that the error is what a suspended or banned user gets: PERMISSION_DENIED with a
 * google.rpc.ErrorInfo (ACCOUNT_SUSPENDED with metadata `until` in RFC 3339, or ACCOUNT_BANNED)
 * and a parley.v1.AccountRestriction detail saying kind, until and reason.
 */
export function assertRestrictedError(err: ConnectError, expected: ExpectedRestriction, what: string): void {
  assert.equal(err.code, Code.PermissionDenied, `${what}: expected PERMISSION_DENIED, got ${describeError(err)}`);
  const reason = restrictionReason(expected.kind);
  const infos = err.findDetails(ErrorInfoSchema);
  const info = infos.find((i) => i.reason === reason);
  assert.ok(info, `${what}: a google.rpc.ErrorInfo with reason ${reason}; got ${JSON.stringify(infos.map((i) => i.reason))}`);
  if (expected.kind === RestrictionKind.SUSPENDED) {
    const until = info.metadata["until"];
    assert.ok(until, `${what}: ErrorInfo metadata has until; got ${JSON.stringify(info.metadata)}`);
    assert.match(until, RFC3339, `${what}: ErrorInfo until is RFC 3339`);
    assert.equal(Date.parse(until), expected.untilMs, `${what}: ErrorInfo until ${until} is the suspension's end ${new Date(expected.untilMs!).toISOString()}`);
  } else {
    assert.ok(!info.metadata["until"], `${what}: a ban has no until in its ErrorInfo; got ${JSON.stringify(info.metadata)}`);
  }
  const restrictions = err.findDetails(AccountRestrictionSchema);
  assert.equal(restrictions.length, 1, `${what}: one parley.v1.AccountRestriction detail; got ${restrictions.length}`);
  assertRestriction(restrictions[0]!, expected, `${what}: AccountRestriction detail`);
}

/** Asserts an AccountRestriction (a detail, a response, a ListRestrictions entry). */
export function assertRestriction(r: AccountRestriction | undefined, expected: ExpectedRestriction, what: string): void {
  assert.ok(r, `${what}: present`);
  assert.equal(r.userId, expected.userId, `${what}: user_id`);
  assert.equal(r.kind, expected.kind, `${what}: kind`);
  if (expected.kind === RestrictionKind.SUSPENDED) {
    assert.equal(msOf(r.until, `${what}: until`), expected.untilMs, `${what}: until`);
  } else {
    assert.equal(r.until, undefined, `${what}: a ban has no until`);
  }
  assert.equal(r.reason, expected.reason, `${what}: reason`);
}

/** Awaits the call and asserts the restricted user's error (see assertRestrictedError). */
export async function expectRestricted(call: Promise<unknown>, expected: ExpectedRestriction, what: string): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assertRestrictedError(ce, expected, what);
    return ce;
  }
  assert.fail(`${what}: expected PERMISSION_DENIED (${restrictionReason(expected.kind)}), but the call succeeded`);
}

/** The name of a ModerationAction value, e.g. "SUSPEND". */
export function actionName(action: ModerationAction): string {
  return Object.entries(ModerationAction).find(([, v]) => v === action)?.[0] ?? String(action);
}

/** The account_moderated payload of an event, if it is one. */
export function accountModerated(e: Event): Extract<Event["kind"], { case: "accountModerated" }>["value"] | undefined {
  return e.kind.case === "accountModerated" ? e.kind.value : undefined;
}

/**
 * Waits for what a user's open stream gets when they are suspended or banned: the
 * account_moderated event with the action, until and reason, then an ending frame with
 * ACCOUNT_RESTRICTED, then the end of the stream with nothing after the ending frame.
 */
export async function expectStreamRestricted(
  feed: Feed,
  expected: { action: ModerationAction; untilMs?: number; reason: string },
): Promise<StreamEnding> {
  const { event, index: eventAt } = await feed.waitForEvent(
    (e) => accountModerated(e)?.action === expected.action,
    `account_moderated(${actionName(expected.action)})`,
  );
  const payload = accountModerated(event)!;
  assert.equal(payload.reason, expected.reason, `${feed.label}: account_moderated reason`);
  if (expected.untilMs !== undefined) {
    assert.equal(msOf(payload.until, `${feed.label}: account_moderated until`), expected.untilMs, `${feed.label}: account_moderated until`);
  } else {
    assert.equal(payload.until, undefined, `${feed.label}: account_moderated has no until`);
  }
  const { value: ending, index: endingAt } = await feed.waitFor(
    (f) => (f.case === "ending" ? f.value : undefined),
    "ending(ACCOUNT_RESTRICTED) after account_moderated",
    { from: eventAt + 1 },
  );
  assert.equal(ending.reason, EndReason.ACCOUNT_RESTRICTED, `${feed.label}: ending reason ${endReasonName(ending.reason)}`);
  const end = await feed.ended("after the ending frame");
  // The stream may close cleanly (as for the other endings) or with the restriction's error.
  if (end.error) {
    assert.equal(end.error.code, Code.PermissionDenied, `${feed.label}: the stream ends cleanly or PERMISSION_DENIED after the ending frame; got ${describeError(end.error)}`);
  }
  assert.equal(endingAt, feed.received.length - 1, `${feed.label}: nothing after the ending frame; received ${feed.summary()}`);
  return ending;
}

/** True when a frame names the string anywhere (ids, notes, reasons, in any field). */
export function frameMentions(frame: SubscribeResponse["frame"], needle: string): boolean {
  return jsonOf(frame).includes(needle);
}

/** True when an error (its message or any detail's bytes) names the string. */
export function errorMentions(err: ConnectError, needle: string): boolean {
  if (err.rawMessage.includes(needle)) return true;
  return err.details.some((d) => {
    const value = "value" in d && d.value instanceof Uint8Array ? Buffer.from(d.value).toString("latin1") : jsonOf(d);
    return value.includes(needle);
  });
}

export function jsonOf(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : v));
}

/** Polls until the call succeeds; returns when it first did. Fails after the deadline with the last error. */
export async function eventuallySucceeds<T>(call: () => Promise<T>, what: string, timeoutMs: number, intervalMs = 200): Promise<{ result: T; at: number }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const result = await call();
      return { result, at: Date.now() };
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) assert.fail(`${what} did not succeed within ${timeoutMs} ms; last error: ${describeError(ConnectError.from(last))}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until the call fails with the code; returns the error. */
export async function eventuallyFailsWith(call: () => Promise<unknown>, code: Code, what: string, timeoutMs: number, intervalMs = 100): Promise<ConnectError> {
  const deadline = Date.now() + timeoutMs;
  let last = "it kept succeeding";
  for (;;) {
    try {
      await call();
    } catch (err) {
      const ce = ConnectError.from(err);
      if (ce.code === code) return ce;
      last = describeError(ce);
    }
    if (Date.now() >= deadline) assert.fail(`${what}: not ${Code[code]} within ${timeoutMs} ms; last: ${last}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------
// An independent reader of grpc-status-details-bin: the protobuf wire format decoded by hand
// from the .proto field numbers (google.rpc.Status, google.protobuf.Any, google.rpc.ErrorInfo,
// parley.v1.AccountRestriction), sharing no code with the server's generated types.

interface WireField {
  no: number;
  /** A varint's value, or a length-delimited field's bytes. */
  value: bigint | Buffer;
}

function readVarint(buf: Buffer, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated varint");
    const byte = buf[pos++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

/** The fields of one encoded message (varint, length-delimited and fixed fields). */
export function wireFields(buf: Buffer): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [key, next] = readVarint(buf, pos);
    pos = next;
    const no = Number(key >> 3n);
    const type = Number(key & 7n);
    if (type === 0) {
      const [v, after] = readVarint(buf, pos);
      out.push({ no, value: v });
      pos = after;
    } else if (type === 2) {
      const [len, after] = readVarint(buf, pos);
      const end = after + Number(len);
      out.push({ no, value: buf.subarray(after, end) });
      pos = end;
    } else if (type === 1) {
      pos += 8;
    } else if (type === 5) {
      pos += 4;
    } else {
      throw new Error(`unsupported wire type ${type}`);
    }
  }
  return out;
}

const bytesOf = (f: WireField | undefined): Buffer => (f && Buffer.isBuffer(f.value) ? f.value : Buffer.alloc(0));
const textOf = (f: WireField | undefined): string => bytesOf(f).toString("utf8");
const numberOf = (f: WireField | undefined): number => (f && typeof f.value === "bigint" ? Number(f.value) : 0);

/** A google.rpc.Status as a grpc-js client receives it in grpc-status-details-bin. */
export interface DecodedStatus {
  code: number;
  message: string;
  details: { typeUrl: string; value: Buffer }[];
}

export function decodeStatus(bin: Buffer): DecodedStatus {
  const fields = wireFields(bin);
  return {
    code: numberOf(fields.find((f) => f.no === 1)),
    message: textOf(fields.find((f) => f.no === 2)),
    details: fields
      .filter((f) => f.no === 3)
      .map((f) => {
        const any = wireFields(bytesOf(f));
        return { typeUrl: textOf(any.find((a) => a.no === 1)), value: bytesOf(any.find((a) => a.no === 2)) };
      }),
  };
}

/** google.rpc.ErrorInfo: reason = 1, domain = 2, metadata = 3 (map<string, string>). */
export function decodeErrorInfo(value: Buffer): { reason: string; domain: string; metadata: Record<string, string> } {
  const fields = wireFields(value);
  const metadata: Record<string, string> = {};
  for (const entry of fields.filter((f) => f.no === 3)) {
    const kv = wireFields(bytesOf(entry));
    metadata[textOf(kv.find((f) => f.no === 1))] = textOf(kv.find((f) => f.no === 2));
  }
  return { reason: textOf(fields.find((f) => f.no === 1)), domain: textOf(fields.find((f) => f.no === 2)), metadata };
}

/** parley.v1.AccountRestriction: user_id = 1, kind = 2, until = 3 (Timestamp), reason = 4. */
export function decodeAccountRestriction(value: Buffer): { userId: string; kind: number; untilMs: number | undefined; reason: string } {
  const fields = wireFields(value);
  const until = fields.find((f) => f.no === 3);
  let untilMs: number | undefined;
  if (until) {
    const ts = wireFields(bytesOf(until));
    untilMs = numberOf(ts.find((f) => f.no === 1)) * 1000 + Math.floor(numberOf(ts.find((f) => f.no === 2)) / 1e6);
  }
  return {
    userId: textOf(fields.find((f) => f.no === 1)),
    kind: numberOf(fields.find((f) => f.no === 2)),
    untilMs,
    reason: textOf(fields.find((f) => f.no === 4)),
  };
}

// ---------------------------------------------------------------------------------------------
// A user with something to write to and read: the calls a restricted user tries.

/** A user in a group with a peer (and a third member), with messages, a story and an upload. */
export interface UserWorld {
  readonly userId: string;
  readonly peerId: string;
  readonly thirdId: string;
  /** The user's clients. */
  readonly clients: Clients;
  readonly peer: Clients;
  readonly convId: string;
  /** A message the user sent before anything happened to them. */
  readonly ownSeq: bigint;
  readonly ownText: string;
  /** A message of the peer. */
  readonly peerSeq: bigint;
  /** A PUBLIC story of the peer. */
  readonly peerStoryId: string;
  /** A media object the user uploaded (not used for anything yet). */
  readonly ownMediaId: string;
}

export async function userWorld(server: RemoteServer, protocol: Protocol, prefix: string): Promise<UserWorld> {
  const [userId, peerId, thirdId] = await newUsers(server, 3, prefix);
  const clients = server.clientsFor(userId!, protocol);
  const peer = server.clientsFor(peerId!, protocol);
  const conv = await createGroup(peer, [userId!, thirdId!], `${prefix} group`);
  const ownText = `earlier words ${marker(prefix)}`;
  const own = await sendText(clients, conv.id, ownText);
  const peerMessage = await sendText(peer, conv.id, "peer's words");
  const story = await postStory(peer, StoryPrivacy.PUBLIC, { caption: "peer's story" });
  const upload = await clients.media.uploadMedia({ data: await fixture("pixel.png") });
  return {
    userId: userId!,
    peerId: peerId!,
    thirdId: thirdId!,
    clients,
    peer,
    convId: conv.id,
    ownSeq: own.seq,
    ownText,
    peerSeq: peerMessage.seq,
    peerStoryId: story.id,
    ownMediaId: upload.media!.id,
  };
}

/** One RPC a user might make. */
export interface Probe {
  readonly name: string;
  call(): Promise<unknown>;
}

/** Write RPCs (no NO_SIDE_EFFECTS option) across the services, each one a user notices. */
export function writeProbes(w: UserWorld): Probe[] {
  const c = w.clients;
  return [
    { name: "MessageService.SendMessage", call: () => c.messages.sendMessage({ conversationId: w.convId, clientMessageId: randomUUID(), content: { case: "text", value: "let me in" } }) },
    { name: "MessageService.EditMessage", call: () => c.messages.editMessage({ conversationId: w.convId, seq: w.ownSeq, content: { case: "text", value: "edited" } }) },
    { name: "MessageService.DeleteMessage", call: () => c.messages.deleteMessage({ conversationId: w.convId, seq: w.ownSeq }) },
    { name: "MessageService.AddReaction", call: () => c.messages.addReaction({ conversationId: w.convId, seq: w.peerSeq, emoji: "👍" }) },
    { name: "ConversationService.MarkRead", call: () => c.conversations.markRead({ conversationId: w.convId, seq: w.peerSeq }) },
    { name: "ConversationService.CreateConversation", call: () => c.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [w.peerId, w.thirdId], name: "new group" }) },
    { name: "ConversationService.RemoveMember (leave)", call: () => c.conversations.removeMember({ conversationId: w.convId, userId: w.userId }) },
    { name: "MediaService.UploadMedia", call: async () => c.media.uploadMedia({ data: await fixture("pixel.png") }) },
    { name: "StoryService.CreateStory", call: () => c.stories.createStory({ mediaId: w.ownMediaId, caption: "new story", privacy: StoryPrivacy.PUBLIC }) },
    { name: "StoryService.MarkStoryViewed", call: () => c.stories.markStoryViewed({ storyId: w.peerStoryId }) },
    { name: "StoryService.AddStoryReaction", call: () => c.stories.addStoryReaction({ storyId: w.peerStoryId, emoji: "🔥" }) },
    { name: "StoryService.ReplyToStory", call: () => c.stories.replyToStory({ storyId: w.peerStoryId, clientMessageId: randomUUID(), content: { case: "text", value: "nice" } }) },
    { name: "SocialService.Follow", call: () => c.social.follow({ userId: w.peerId }) },
    { name: "SocialService.Block", call: () => c.social.block({ userId: w.thirdId }) },
    { name: "UserService.UpdateProfile", call: () => c.users.updateProfile({ displayName: "renamed" }) },
    { name: "EventService.SendTyping", call: () => c.events.sendTyping({ conversationId: w.convId }) },
    { name: "ReportService.CreateReport", call: () => c.reports.createReport({ target: { target: userTarget(w.peerId) }, reason: ReportReason.SPAM }) },
    { name: "NotificationService.MarkNotificationsRead", call: () => c.notifications.markNotificationsRead({ all: true }) },
    { name: "NotificationService.SetNotificationSettings", call: () => c.notifications.setNotificationSettings({ conversationId: w.convId, level: NotificationLevel.NONE }) },
  ];
}

/** Read RPCs (NO_SIDE_EFFECTS): a suspended user may still make them. */
export function readProbes(w: UserWorld): Probe[] {
  const c = w.clients;
  return [
    { name: "UserService.GetMe", call: () => c.users.getMe({}) },
    { name: "UserService.GetUser", call: () => c.users.getUser({ userId: w.peerId }) },
    { name: "ConversationService.GetConversation", call: () => c.conversations.getConversation({ conversationId: w.convId }) },
    { name: "ConversationService.ListConversations", call: () => c.conversations.listConversations({}) },
    { name: "ConversationService.ListMembers", call: () => c.conversations.listMembers({ conversationId: w.convId }) },
    { name: "MessageService.ListMessages", call: () => c.messages.listMessages({ conversationId: w.convId }) },
    { name: "MessageService.GetMessage", call: () => c.messages.getMessage({ conversationId: w.convId, seq: w.peerSeq }) },
    { name: "StoryService.GetStory", call: () => c.stories.getStory({ storyId: w.peerStoryId }) },
    { name: "StoryService.ListStoryFeed", call: () => c.stories.listStoryFeed({ includePublic: true }) },
    { name: "StoryService.ListUserStories", call: () => c.stories.listUserStories({ userId: w.peerId }) },
    { name: "SocialService.ListFollowers", call: () => c.social.listFollowers({ userId: w.userId }) },
    { name: "MediaService.GetMedia", call: () => c.media.getMedia({ mediaId: w.ownMediaId }) },
    { name: "EventService.GetPresence", call: () => c.events.getPresence({ userIds: [w.peerId] }) },
    { name: "SearchService.SearchMessages", call: () => c.search.searchMessages({ query: "earlier" }) },
    { name: "NotificationService.ListNotifications", call: () => c.notifications.listNotifications({}) },
    { name: "NotificationService.GetNotificationSettings", call: () => c.notifications.getNotificationSettings({ conversationId: w.convId }) },
  ];
}

/** What the peer sees of the conversation: every message's seq, sender and text. */
export async function historySeenBy(clients: Clients, convId: string): Promise<string[]> {
  return (await listAllForward(clients, convId)).map(
    (m) => `${m.seq}:${m.senderId}:${m.content.case === "text" ? m.content.value : m.content.case ?? (m.deletion ? "deleted" : "?")}:v${m.version}`,
  );
}

/**
 * Opens Subscribe again and again (every few milliseconds, alternately without a cursor and
 * from `cursor`) from before the restriction is made until shortly after it was, so some
 * streams start while it is being committed and spread. Returns the feeds.
 */
export async function subscribeStorm(
  source: Pick<Clients, "events">,
  restrict: () => Promise<unknown>,
  label: string,
  cursor = "",
): Promise<Feed[]> {
  const feeds: Feed[] = [];
  let done = false;
  let stopAt = Number.POSITIVE_INFINITY;
  const restricting = restrict().finally(() => {
    done = true;
    stopAt = Date.now() + 60;
  });
  for (let i = 0; !done || Date.now() < stopAt; i++) {
    feeds.push(openFeed(source, { label: `${label}#${i}`, cursor: i % 2 === 1 ? cursor : "" }));
    await new Promise((r) => setTimeout(r, 3));
  }
  await restricting;
  return feeds;
}

/**
 * Asserts that every feed is over: refused with the restriction's error, or ended with
 * ACCOUNT_RESTRICTED. A stream still open after the deadline is a suspended user's live stream.
 */
export async function assertAllEndedByRestriction(feeds: Feed[], expected: ExpectedRestriction, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const open: string[] = [];
  for (const feed of feeds) {
    try {
      await feed.ended("a restricted user's stream", Math.max(100, deadline - Date.now()));
    } catch {
      const told = feed.events.map(accountModerated).filter((m) => m !== undefined).map((m) => actionName(m.action));
      open.push(`${feed.label} (account_moderated received: ${told.join(", ") || "none"}): ${feed.summary(8)}`);
      continue;
    }
    const ending = feed.received.find((r) => r.frame.case === "ending");
    if (ending) {
      assert.ok(
        ending.frame.case === "ending" && ending.frame.value.reason === EndReason.ACCOUNT_RESTRICTED,
        `${feed.label}: ended for the restriction; received ${feed.summary()}`,
      );
    } else {
      assert.ok(feed.end?.error, `${feed.label}: refused or ended; received ${feed.summary()}`);
      assertRestrictedError(feed.end.error, expected, `${feed.label}: refused`);
    }
  }
  assert.deepEqual(open, [], `${open.length} of ${feeds.length} streams were still open ${timeoutMs} ms after the restriction`);
}
