/**
 * EventService: the Subscribe feed, typing and presence.
 *
 * Subscribe registers the stream with the node's feed hub FIRST, so live events start
 * queueing, then replays from the log everything after the client's cursor, then drains the
 * live queue skipping what the replay already sent. Both sides are ordered by position within
 * each partition of the log, and a conversation's events all stand in one partition, so
 * per-conversation seq order holds across the switch-over and nothing is sent twice.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { EventSchema, TypingSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import {
  CaughtUpSchema,
  EndReason,
  GetPresenceResponseSchema,
  HeartbeatSchema,
  PresenceSchema,
  ResyncRequiredSchema,
  SendTypingResponseSchema,
  StreamEndingSchema,
  SubscribeResponseSchema,
  type EventService as EventServiceDesc,
  type GetPresenceRequest,
  type SendTypingRequest,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../gen/parley/v1/event_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { FeedConfig } from "../config.ts";
import type { StreamRecorder } from "../connections/index.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import { decodeCursor, encodeCursor, type FeedCursor } from "../log/cursor.ts";
import type { EventBus } from "../log/event-bus.ts";
import { findNextCreatedAt, readEventsForUser, readFeedPage, readHeads, type EventLogLayout, type StoredEvent } from "../log/event-log.ts";
import { covers, furthest, withPartitionAt, type LogPosition } from "../log/log-position.ts";
import type { PresenceTracker } from "../presence/presence-tracker.ts";
import { requireUserId, requireUuid } from "../validation.ts";
import { deadlinesAt, findRetentionSettings, RetentionPolicy } from "../retention/index.ts";
import type { FeedHub } from "./feed-hub.ts";
import type { FeedSubscription, Wakeup } from "./feed-subscription.ts";
import { isVisibleTo, membershipAt, membershipChange } from "./membership-filter.ts";

/** What the feed needs to know of conversation membership (the conversations module answers). */
export interface FeedMemberships {
  /** The conversations the user is a member of now. */
  conversationIdsOf(userId: string): Promise<string[]>;
  isMember(conversationId: string, userId: string): Promise<boolean>;
}

const REPLAY_PAGE = 500;
const MAX_PRESENCE_USERS = 100;
/** Each live event's shared frame on this node (see sharedEventFrame). */
const framesOf = new WeakMap<StoredEvent, SubscribeResponse>();

export interface EventServiceOptions {
  db: Kysely<Database>;
  log: EventLogLayout;
  memberships: FeedMemberships;
  /**
   * Throws when the user may not hold a stream now (a suspension or ban). Checked after the
   * stream is registered with the hub: a restriction dispatched before that is in force here
   * already, and one dispatched after it reaches the stream, which then ends.
   */
  requireUnrestricted: (userId: string) => void;
  hub: FeedHub;
  bus: EventBus;
  presence: PresenceTracker;
  feed: FeedConfig;
  /** The deployment's retention: a replay sends no event about a message past retention. None by default. */
  retention?: RetentionPolicy;
  /** Where live streams are recorded (the connection registry); null when it is off. */
  registry?: StreamRecorder | null;
}

export class EventService implements ServiceImpl<typeof EventServiceDesc> {
  readonly #options: EventServiceOptions;

  constructor(options: EventServiceOptions) {
    this.#options = options;
  }

  async *subscribe(req: SubscribeRequest, ctx: HandlerContext): AsyncGenerator<SubscribeResponse> {
    const { userId } = requireCaller(ctx);
    const { hub, presence, feed, memberships } = this.#options;
    const requested = req.cursor === "" ? null : decodeCursor(req.cursor);
    const conversationIds = await memberships.conversationIdsOf(userId);
    // Time-ordered, so the registry's newest-first listings walk its indexes in order.
    const sessionId = newId();
    const subscription = hub.open(userId, sessionId, conversationIds);
    presence.streamOpened(userId);
    const { registry } = this.#options;
    try {
      this.#options.requireUnrestricted(userId);
      registry?.opened({ sessionId, userId, protocol: ctx.protocolName, headers: ctx.requestHeader });
      let delivered = hub.position;
      if (requested !== null) {
        const resync = requested.legacy ? null : await this.#resyncReason(requested);
        if (requested.legacy || resync !== null) {
          const reason = resync ?? "the cursor was issued before the event log was partitioned";
          yield frame({ case: "resyncRequired", value: create(ResyncRequiredSchema, { reason, cursor: this.#cursor(hub.position) }) });
          return;
        }
        // A generator of its own: what the catch-up needs is dropped when it ends, instead of
        // staying in this generator's frame for as long as the stream lives.
        delivered = yield* this.#catchUp(userId, requested.positions, conversationIds, subscription);
      }
      yield frame({ case: "caughtUp", value: create(CaughtUpSchema, { cursor: this.#cursor(delivered), sessionId }) });

      for (;;) {
        const wakeup = await subscription.next(feed.heartbeatMs, ctx.signal);
        if ("item" in wakeup) {
          const { item } = wakeup;
          if ("ephemeral" in item) yield frame({ case: "event", value: item.ephemeral });
          else if (item.stored.position > delivered[item.stored.partition]!) {
            // Past catch-up the hub's position covers what this stream delivered, and every
            // stream on this node shares the event's frame; until then the frame is its own.
            const shared = covers(item.at, delivered);
            delivered = shared ? item.at : furthest(item.at, delivered);
            yield shared ? this.#sharedEventFrame(item.stored, item.at) : this.#eventFrame(item.stored, delivered);
          }
        } else if ("idle" in wakeup) {
          // Nothing is queued, so everything the hub dispatched so far has reached this stream.
          if (subscription.idle && !covers(delivered, hub.position)) delivered = furthest(delivered, hub.position);
          yield frame({ case: "heartbeat", value: create(HeartbeatSchema, { cursor: this.#cursor(delivered), serverTime: timestampFromDate(new Date()) }) });
        } else {
          if (ctx.signal.aborted) return;
          const reason = endReason(wakeup);
          yield frame({ case: "ending", value: create(StreamEndingSchema, { reason, cursor: this.#cursor(delivered) }) });
          return;
        }
      }
    } finally {
      hub.close(subscription);
      registry?.closed(sessionId);
      presence.streamClosed(userId);
    }
  }

  async sendTyping(req: SendTypingRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    if (!(await this.#options.memberships.isMember(conversationId, userId))) throw new NotFoundError("conversation");
    const now = new Date();
    const event: Event = create(EventSchema, {
      id: newId(now.getTime()),
      conversationId,
      actorId: userId,
      createdAt: timestampFromDate(now),
      kind: {
        case: "typing",
        value: create(TypingSchema, { userId, expiresAt: timestampFromDate(new Date(now.getTime() + this.#options.feed.typingTtlMs)) }),
      },
    });
    this.#options.bus.publishEphemeral({ conversationId }, event);
    return create(SendTypingResponseSchema, {});
  }

  async getPresence(req: GetPresenceRequest, ctx: HandlerContext) {
    requireCaller(ctx);
    if (req.userIds.length > MAX_PRESENCE_USERS) throw new InvalidInputError("user_ids", `must name at most ${MAX_PRESENCE_USERS} users`);
    const ids = req.userIds.map((id, i) => requireUserId(`user_ids[${i}]`, id));
    const known = await this.#options.presence.lookup([...new Set(ids)]);
    return create(GetPresenceResponseSchema, {
      presences: ids.flatMap((userId) => {
        const info = known.get(userId);
        if (!info) return [];
        return [create(PresenceSchema, { userId, online: info.online, ...(info.lastSeenAt && { lastSeenAt: timestampFromDate(info.lastSeenAt) }) })];
      }),
    });
  }

  /**
   * Replays from the log everything after `requested` with the membership the user had at the
   * cursor, changing it at their own join/leave events exactly as the live stream does. If the
   * live queue overflowed meanwhile, catches up again from where the replay got to. Returns
   * the position delivered up to.
   */
  async *#catchUp(userId: string, requested: LogPosition, current: string[], subscription: FeedSubscription): AsyncGenerator<SubscribeResponse, LogPosition> {
    const { db } = this.#options;
    let delivered = requested;
    const ownEvents = await readEventsForUser(db, userId, requested);
    const following = membershipAt(current, ownEvents, userId);
    const candidates = [...new Set([...following, ...current, ...ownEvents.flatMap((e) => (e.conversationId ? [e.conversationId] : []))])];
    // Read once; each page applies the deadlines of its own moment.
    const retention = this.#options.retention ?? new RetentionPolicy(null);
    const retentionSettings = await findRetentionSettings(db, candidates, retention.deploymentSeconds !== null);
    do {
      subscription.resetAfterCatchUp();
      for (;;) {
        const deadlines = deadlinesAt(retention.at(new Date()), retentionSettings);
        const page = await readFeedPage(db, candidates, userId, delivered, REPLAY_PAGE, deadlines);
        for (const stored of page) {
          delivered = withPartitionAt(delivered, stored.partition, stored.position);
          if (!isVisibleTo(stored, userId, following)) continue;
          // About a message past retention, or scrubbed by the sweeper: the position moves on, nothing is sent.
          if (stored.withheld || stored.event.kind.case === undefined) continue;
          const change = membershipChange(stored, userId);
          if (change && "follow" in change) following.add(change.follow);
          if (change && "unfollow" in change) following.delete(change.unfollow);
          yield this.#eventFrame(stored, delivered);
        }
        if (page.length < REPLAY_PAGE) break;
      }
    } while (subscription.overflowed);
    return delivered;
  }

  /** Why a cursor cannot be replayed here, or null when it can. */
  async #resyncReason({ logId, positions: position }: FeedCursor): Promise<string | null> {
    const { db, feed, log } = this.#options;
    if (logId !== log.logId) return "the cursor belongs to another event log (another deployment, or one since repartitioned)";
    if (position.length !== log.partitions) return `the cursor has ${position.length} partitions; this event log has ${log.partitions}`;
    const heads = await readHeads(db);
    if (!covers(heads, position)) return "the cursor is ahead of this deployment's event log";
    const next = await findNextCreatedAt(db, position, heads);
    if (next.some((createdAt) => createdAt === null || createdAt.getTime() < Date.now() - feed.replayWindowMs)) {
      return `the cursor is older than the replay window (${Math.round(feed.replayWindowMs / 1000)} s)`;
    }
    return null;
  }

  #cursor(position: LogPosition): string {
    return encodeCursor({ logId: this.#options.log.logId, positions: position });
  }

  /** A frame that delivers an event with the cursor after it. */
  #eventFrame(stored: StoredEvent, after: LogPosition): SubscribeResponse {
    return frame({ case: "event", value: { ...stored.event, cursor: this.#cursor(after) } });
  }

  /**
   * The frame that delivers a live event at the hub's position: one object per event per node,
   * shared by every stream that delivers it, so a group message fanned out to hundreds of local
   * streams is encoded once (the lean gRPC path caches encodings by message object).
   */
  #sharedEventFrame(stored: StoredEvent, at: LogPosition): SubscribeResponse {
    let shared = framesOf.get(stored);
    if (!shared) {
      shared = this.#eventFrame(stored, at);
      framesOf.set(stored, shared);
    }
    return shared;
  }
}

function endReason(wakeup: Wakeup): EndReason {
  if ("overflowed" in wakeup) return EndReason.SLOW_CONSUMER;
  if ("restricted" in wakeup) return EndReason.ACCOUNT_RESTRICTED;
  if ("sessionEnded" in wakeup) return EndReason.SESSION_ENDED;
  return EndReason.SERVER_DRAINING;
}

function frame(value: SubscribeResponse["frame"]): SubscribeResponse {
  return create(SubscribeResponseSchema, { frame: value });
}
