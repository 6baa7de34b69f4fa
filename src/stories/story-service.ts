/**
 * StoryService. Every call that names a story goes through StoryAccess (the privacy rule at
 * the clock of the call), so a story the caller may not see, or that expired a millisecond
 * ago, is NOT_FOUND on every path; lists filter with the same rule.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { CreateConversationRequestSchema } from "../../gen/parley/v1/conversation_service_pb.ts";
import { SendMessageRequestSchema } from "../../gen/parley/v1/message_service_pb.ts";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import {
  AddStoryReactionResponseSchema,
  CreateStoryResponseSchema,
  DeleteStoryResponseSchema,
  GetStoryResponseSchema,
  ListStoryFeedResponseSchema,
  ListStoryViewersResponseSchema,
  ListUserStoriesResponseSchema,
  MarkStoryViewedResponseSchema,
  RemoveStoryReactionResponseSchema,
  ReplyToStoryResponseSchema,
  StoryTrayEntrySchema,
  StoryViewerSchema,
  type AddStoryReactionRequest,
  type CreateStoryRequest,
  type DeleteStoryRequest,
  type GetStoryRequest,
  type ListStoryFeedRequest,
  type ListStoryViewersRequest,
  type ListUserStoriesRequest,
  type MarkStoryViewedRequest,
  type RemoveStoryReactionRequest,
  type ReplyToStoryRequest,
  type StoryService as StoryServiceDesc,
} from "../../gen/parley/v1/story_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits, StoriesConfig } from "../config.ts";
import type { ConversationService } from "../conversations/index.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { writeWithEvents, type EventPublisher, type NewEvent } from "../log/index.ts";
import { newId } from "../ids.ts";
import { findMedia } from "../media/index.ts";
import { toMessage } from "../messages/message-mapper.ts";
import type { MessageService, SendBatcher } from "../messages/index.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { requireEmoji } from "../reactions/index.ts";
import { boundedText, pageSize, requireUserId, requireUuid } from "../validation.ts";
import type { StoryAccess } from "./story-access.ts";
import { audienceOf, storyPosted, storyReacted, storyViewed } from "./story-events.ts";
import type { StoryExpiryScheduler } from "./story-expiry.ts";
import { toStory, toStoryReactions } from "./story-mapper.ts";
import { isTier, relationOf, visibleTiers } from "./story-privacy.ts";
import type { StoryRemover } from "./story-remover.ts";
import * as repo from "./story-repository.ts";
import * as tray from "./story-tray-repository.ts";

const DEFAULT_TRAY_PAGE = 20;
const MAX_TRAY_PAGE = 100;
const DEFAULT_VIEWER_PAGE = 50;

/**
 * The privacy rule as a table for the tray query: the visible tiers' mask of a non-author whose
 * stored relation is blocked·4 + close friend·2 + follower (index + 1 in SQL). Computed from
 * story-privacy.ts, so the rule is still stated once.
 */
const MASK_BY_RELATION: readonly number[] = Array.from({ length: 8 }, (_, bits) =>
  repo.tierMask(visibleTiers(relationOf({ isAuthor: false, blocked: (bits & 4) !== 0, closeFriend: (bits & 2) !== 0, follower: (bits & 1) !== 0 }))),
);

export interface StoryServiceOptions {
  db: Kysely<Database>;
  access: StoryAccess;
  remover: StoryRemover;
  expiry: StoryExpiryScheduler;
  publisher: EventPublisher;
  /** ReplyToStory finds or creates the DIRECT conversation and sends through the normal path. */
  conversations: ConversationService;
  messages: MessageService;
  sends: SendBatcher;
  config: StoriesConfig;
  limits: Limits;
}

export class StoryService implements ServiceImpl<typeof StoryServiceDesc> {
  readonly #o: StoryServiceOptions;

  constructor(options: StoryServiceOptions) {
    this.#o = options;
  }

  async createStory(req: CreateStoryRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const mediaId = requireUuid("media_id", req.mediaId);
    const caption = boundedText("caption", req.caption, this.#o.config.maxCaptionLength);
    if (!isTier(req.privacy)) {
      throw new InvalidInputError("privacy", "must be PUBLIC, FOLLOWERS or CLOSE_FRIENDS");
    }
    const media = await findMedia(this.#o.db, mediaId);
    if (!media || media.owner_id !== userId) throw new NotFoundError("media");
    if (media.conversation_id !== null) throw new InvalidInputError("media_id", "is an encrypted attachment of a conversation, not a picture or video a story can show");

    const now = new Date();
    const id = newId(now.getTime());
    const posted = await this.#write(async (tx, recorded) => {
      const row = await repo.insertStoryIfNew(tx, {
        id,
        author_id: userId,
        media_id: mediaId,
        caption,
        privacy: req.privacy,
        created_at: now,
        expires_at: new Date(now.getTime() + this.#o.config.ttlMs),
      });
      if (!row) return null;
      const story = toStory({ story: row, media }, { viewerId: userId, seen: true });
      recorded.push(...storyPosted(story, await audienceOf(tx, userId, req.privacy)));
      return story;
    });
    if (posted) {
      await this.#o.expiry.schedule(posted.id);
      return create(CreateStoryResponseSchema, { story: posted, created: true });
    }
    // A retry: the story that already shows this media, if it is still live.
    const existing = await repo.findStoryByMedia(this.#o.db, mediaId);
    if (!existing || existing.author_id !== userId) throw new NotFoundError("media");
    const [story] = await this.#present(userId, [await this.#o.access.requireVisible(userId, existing.id, now)]);
    return create(CreateStoryResponseSchema, { story, created: false });
  }

  async getStory(req: GetStoryRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const found = await this.#o.access.requireVisible(userId, requireUuid("story_id", req.storyId), new Date());
    const [story] = await this.#present(userId, [found]);
    return create(GetStoryResponseSchema, { story });
  }

  async deleteStory(req: DeleteStoryRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const { story } = await this.#requireOwnStory(userId, req.storyId);
    await this.#o.remover.remove([story], userId);
    return create(DeleteStoryResponseSchema, {});
  }

  async listUserStories(req: ListUserStoriesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const authorId = req.userId === "" ? userId : requireUserId("user_id", req.userId);
    const tiers = visibleTiers(await this.#o.access.relation(userId, authorId));
    const rows = await repo.listVisibleStories(this.#o.db, userId, new Map([[authorId, repo.tierMask(tiers)]]), new Date());
    return create(ListUserStoriesResponseSchema, { stories: await this.#present(userId, rows) });
  }

  async listStoryFeed(req: ListStoryFeedRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_TRAY_PAGE, MAX_TRAY_PAGE);
    let after: tray.TrayPosition | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("story-tray", req.pageToken, ["g", "t", "a", "p"] as const);
      if (Boolean(token.p) !== req.includePublic) throw new InvalidInputError("page_token", "was issued with another include_public");
      after = { group: Number(token.g), micros: String(token.t), authorId: String(token.a) };
    }
    const now = new Date();
    const { authors, stories } = await tray.listTrayPage(this.#o.db, userId, MASK_BY_RELATION, req.includePublic, now, after, limit);
    const page = authors.slice(0, limit);
    const last = page.at(-1);
    return create(ListStoryFeedResponseSchema, {
      entries: page.map((a) =>
        create(StoryTrayEntrySchema, {
          authorId: a.author_id,
          stories: (stories.get(a.author_id) ?? []).map((s) => toStory(s, { viewerId: userId, seen: s.seen, reactions: toStoryReactions(s.reactions).get(s.story.id) })),
          hasUnseen: a.has_unseen,
          latestStoryAt: timestampFromDate(a.latest_at),
        }),
      ),
      nextPageToken:
        authors.length > limit && last
          ? encodePageToken("story-tray", { g: last.has_unseen ? 0 : 1, t: last.latest_micros, a: last.author_id, p: req.includePublic ? 1 : 0 })
          : "",
    });
  }

  async markStoryViewed(req: MarkStoryViewedRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const { story } = await this.#o.access.requireVisible(userId, requireUuid("story_id", req.storyId), new Date());
    if (story.author_id === userId) return create(MarkStoryViewedResponseSchema, { firstView: false });
    const firstView = await this.#write(async (tx, recorded) => {
      const view = await repo.recordView(tx, story.id, userId, new Date());
      if (!view) throw new NotFoundError("story");
      if (view.first) recorded.push(storyViewed(story.id, story.author_id, userId, view.viewCount));
      return view.first;
    });
    return create(MarkStoryViewedResponseSchema, { firstView });
  }

  async listStoryViewers(req: ListStoryViewersRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const { story } = await this.#requireOwnStory(userId, req.storyId);
    const limit = pageSize(req.pageSize, DEFAULT_VIEWER_PAGE, this.#o.limits.maxPageSize);
    let after: { micros: string; id: string } | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("story-viewers", req.pageToken, ["s", "t", "u"] as const);
      if (token.s !== story.id) throw new InvalidInputError("page_token", "belongs to another story");
      after = { micros: String(token.t), id: String(token.u) };
    }
    const rows = await repo.listViewers(this.#o.db, story.id, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListStoryViewersResponseSchema, {
      viewers: page.map((r) => create(StoryViewerSchema, { userId: r.viewer_id, viewedAt: timestampFromDate(r.viewed_at) })),
      nextPageToken: rows.length > limit && last ? encodePageToken("story-viewers", { s: story.id, t: last.micros, u: last.viewer_id }) : "",
      viewCount: BigInt(story.view_count),
    });
  }

  async addStoryReaction(req: AddStoryReactionRequest, ctx: HandlerContext) {
    const { changed, reactions } = await this.#react("add", req, ctx);
    return create(AddStoryReactionResponseSchema, { added: changed, reactions });
  }

  async removeStoryReaction(req: RemoveStoryReactionRequest, ctx: HandlerContext) {
    const { changed, reactions } = await this.#react("remove", req, ctx);
    return create(RemoveStoryReactionResponseSchema, { removed: changed, reactions });
  }

  async replyToStory(req: ReplyToStoryRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const { story } = await this.#o.access.requireVisible(userId, requireUuid("story_id", req.storyId), new Date());
    if (story.author_id === userId) throw new InvalidInputError("story_id", "is the caller's own story");
    // The reply is validated (against a placeholder conversation id) before the DIRECT
    // conversation is created, so a bad reply leaves nothing behind.
    const command = this.#o.messages.toCommand(
      create(SendMessageRequestSchema, { conversationId: newId(), clientMessageId: req.clientMessageId, content: req.content }),
      userId,
    );
    const { conversation } = await this.#o.conversations.createConversation(
      create(CreateConversationRequestSchema, { type: ConversationType.DIRECT, memberIds: [story.author_id] }),
      ctx,
    );
    const row = await this.#o.sends.send({ ...command, conversationId: conversation!.id, story: { storyId: story.id, authorId: story.author_id } });
    return create(ReplyToStoryResponseSchema, { message: toMessage(row) });
  }

  async #react(op: "add" | "remove", req: AddStoryReactionRequest | RemoveStoryReactionRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const storyId = requireUuid("story_id", req.storyId);
    const emoji = requireEmoji("emoji", req.emoji);
    const { story } = await this.#o.access.requireVisible(userId, storyId, new Date());
    const changed = await this.#write(async (tx, recorded) => {
      const change = await repo.changeReaction(tx, op, story.id, emoji, userId);
      if (!change) throw new NotFoundError("story");
      if (change.changed) recorded.push(storyReacted(story.id, story.author_id, userId, emoji, op === "add", change.count));
      return change.changed;
    });
    const reactions = toStoryReactions(await repo.findStoryReactions(this.#o.db, [story.id], userId)).get(story.id) ?? [];
    return { changed, reactions };
  }

  /** A story the caller may see and wrote; PERMISSION_DENIED when they may see it but did not write it. */
  async #requireOwnStory(userId: string, storyId: string) {
    const found = await this.#o.access.requireVisible(userId, requireUuid("story_id", storyId), new Date());
    if (found.story.author_id !== userId) throw new PermissionDeniedError("only the author may do this");
    return found;
  }

  /** Maps stories for the viewer with their reactions and seen flags (looked up when the rows lack them). */
  async #present(viewerId: string, found: readonly (repo.StoryWithMedia & { seen?: boolean })[]): Promise<Story[]> {
    const ids = found.map((f) => f.story.id);
    const needSeen = found.some((f) => f.seen === undefined);
    const [reactionRows, seen] = await Promise.all([
      repo.findStoryReactions(this.#o.db, ids, viewerId),
      needSeen ? repo.findSeen(this.#o.db, viewerId, ids) : new Set(found.filter((f) => f.seen).map((f) => f.story.id)),
    ]);
    const reactions = toStoryReactions(reactionRows);
    return found.map((f) => toStory(f, { viewerId, seen: seen.has(f.story.id), reactions: reactions.get(f.story.id) }));
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#o.db, this.#o.publisher, work);
  }
}
