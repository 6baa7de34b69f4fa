/**
 * EventService: the Subscribe feed, typing and presence.
 *
 * Subscribe registers the stream with the node's feed hub FIRST, so live events start
 * queueing, then replays from the log everything after the client's cursor, then drains the
 * live queue skipping what the replay already sent. Both sides are ordered by log position,
 * which follows commit order, so per-conversation seq order holds across the switch-over
 * and nothing is sent twice.
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
  type EventService as EventServiceDesc,
  type GetPresenceRequest,
  type SendTypingRequest,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../gen/parley/v1/event_service_pb.ts";
import { SubscribeResponseSchema } from "../../gen/parley/v1/event_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { FeedConfig } from "../config.ts";
import { findRole } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import type { PresenceTracker } from "../presence/presence-tracker.ts";
import { requireUserId, requireUuid } from "../validation.ts";
import { decodeCursor, encodeCursor } from "./cursor.ts";
import type { EventBus } from "./event-bus.ts";
import { findCreatedAt, readEventsForUser, readFeedPage, readHead, type StoredEvent } from "./event-log.ts";
import { isVisibleTo, membershipAt, membershipChange } from "./membership-filter.ts";
import type { FeedHub } from "./feed-hub.ts";
import { findConversationIdsOf } from "../conversations/conversation-repository.ts";
import type { FeedSubscription } from "./feed-subscription.ts";

const REPLAY_PAGE = 500;
const MAX_PRESENCE_USERS = 100;
/** Each event's frame on this node (see eventFrame). */
const framesOf = new WeakMap<StoredEvent, SubscribeResponse>();

export interface EventServiceOptions {
  db: Kysely<Database>;
  hub: FeedHub;
  bus: EventBus;
  presence: PresenceTracker;
  feed: FeedConfig;
}

export class EventService implements ServiceImpl<typeof EventServiceDesc> {
  readonly #options: EventServiceOptions;

  constructor(options: EventServiceOptions) {
    this.#options = options;
  }

  async *subscribe(req: SubscribeRequest, ctx: HandlerContext): AsyncGenerator<SubscribeResponse> {
    const { userId } = requireCaller(ctx);
    const { db, hub, presence, feed } = this.#options;
    const requested = req.cursor === "" ? null : decodeCursor(req.cursor);
    const conversationIds = await findConversationIdsOf(db, userId);
    const subscription = hub.open(userId, conversationIds);
    presence.streamOpened(userId);
    try {
      let delivered = hub.position;
      if (requested !== null) {
        const resync = await this.#resyncReason(requested);
        if (resync) {
          yield frame({ case: "resyncRequired", value: create(ResyncRequiredSchema, { reason: resync, cursor: encodeCursor(hub.position) }) });
          return;
        }
        // A generator of its own: what the catch-up needs is dropped when it ends, instead of
        // staying in this generator's frame for as long as the stream lives.
        delivered = yield* this.#catchUp(userId, requested, conversationIds, subscription);
      }
      yield frame({ case: "caughtUp", value: create(CaughtUpSchema, { cursor: encodeCursor(delivered) }) });

      for (;;) {
        const wakeup = await subscription.next(feed.heartbeatMs, ctx.signal);
        if ("item" in wakeup) {
          const { item } = wakeup;
          if ("ephemeral" in item) yield frame({ case: "event", value: item.ephemeral });
          else if (item.stored.position > delivered) {
            yield eventFrame(item.stored);
            delivered = item.stored.position;
          }
        } else if ("idle" in wakeup) {
          // Nothing is queued, so everything the hub dispatched so far has reached this stream.
          if (subscription.idle && hub.position > delivered) delivered = hub.position;
          yield frame({ case: "heartbeat", value: create(HeartbeatSchema, { cursor: encodeCursor(delivered), serverTime: timestampFromDate(new Date()) }) });
        } else {
          if (ctx.signal.aborted) return;
          const reason = "overflowed" in wakeup ? EndReason.SLOW_CONSUMER : EndReason.SERVER_DRAINING;
          yield frame({ case: "ending", value: create(StreamEndingSchema, { reason, cursor: encodeCursor(delivered) }) });
          return;
        }
      }
    } finally {
      hub.close(subscription);
      presence.streamClosed(userId);
    }
  }

  async sendTyping(req: SendTypingRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    if ((await findRole(this.#options.db, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
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
  async *#catchUp(userId: string, requested: bigint, current: string[], subscription: FeedSubscription): AsyncGenerator<SubscribeResponse, bigint> {
    const { db } = this.#options;
    let delivered = requested;
    const ownEvents = await readEventsForUser(db, userId, requested);
    const following = membershipAt(current, ownEvents, userId);
    const candidates = [...new Set([...following, ...current, ...ownEvents.flatMap((e) => (e.conversationId ? [e.conversationId] : []))])];
    do {
      subscription.resetAfterCatchUp();
      for (;;) {
        const page = await readFeedPage(db, candidates, userId, delivered, REPLAY_PAGE);
        for (const stored of page) {
          delivered = stored.position;
          if (!isVisibleTo(stored, userId, following)) continue;
          const change = membershipChange(stored, userId);
          if (change && "follow" in change) following.add(change.follow);
          if (change && "unfollow" in change) following.delete(change.unfollow);
          yield eventFrame(stored);
        }
        if (page.length < REPLAY_PAGE) break;
      }
    } while (subscription.overflowed);
    return delivered;
  }

  /** Why a cursor cannot be replayed, or null when it can. */
  async #resyncReason(position: bigint): Promise<string | null> {
    const { db, feed } = this.#options;
    const head = await readHead(db);
    if (position > head) return "the cursor is ahead of this deployment's event log";
    if (position === head) return null;
    const next = await findCreatedAt(db, position + 1n);
    if (next === null || next.getTime() < Date.now() - feed.replayWindowMs) {
      return `the cursor is older than the replay window (${Math.round(feed.replayWindowMs / 1000)} s)`;
    }
    return null;
  }
}

function frame(value: SubscribeResponse["frame"]): SubscribeResponse {
  return create(SubscribeResponseSchema, { frame: value });
}

/**
 * The frame that delivers an event: one object per event per node, shared by every stream
 * that delivers it, so a group message fanned out to hundreds of local streams is encoded
 * once (the lean gRPC path caches encodings by message object).
 */
function eventFrame(stored: StoredEvent): SubscribeResponse {
  let shared = framesOf.get(stored);
  if (!shared) {
    shared = frame({ case: "event", value: { ...stored.event, cursor: encodeCursor(stored.position) } });
    framesOf.set(stored, shared);
  }
  return shared;
}

