/**
 * SocialService: follows, close friends and blocks. Another user with a block between them
 * and the caller (either way) is NOT_FOUND here, exactly like a user who does not exist.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import {
  AddCloseFriendResponseSchema,
  BlockResponseSchema,
  FollowResponseSchema,
  ListBlockedResponseSchema,
  ListCloseFriendsResponseSchema,
  ListFollowersResponseSchema,
  ListFollowingResponseSchema,
  RemoveCloseFriendResponseSchema,
  SocialListEntrySchema,
  UnblockResponseSchema,
  UnfollowResponseSchema,
  type AddCloseFriendRequest,
  type BlockRequest,
  type FollowRequest,
  type ListBlockedRequest,
  type ListCloseFriendsRequest,
  type ListFollowersRequest,
  type ListFollowingRequest,
  type RemoveCloseFriendRequest,
  type SocialListEntry,
  type SocialService as SocialServiceDesc,
  type UnblockRequest,
  type UnfollowRequest,
} from "../../gen/parley/v1/social_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { pageSize, requireUserId } from "../validation.ts";
import * as repo from "./social-repository.ts";
import type { EdgeKind, EdgePosition } from "./social-repository.ts";

const DEFAULT_PAGE = 50;

export class SocialService implements ServiceImpl<typeof SocialServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #limits: Limits;

  constructor(db: Kysely<Database>, limits: Limits) {
    this.#db = db;
    this.#limits = limits;
  }

  async follow(req: FollowRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    return create(FollowResponseSchema, { followed: await this.#addUnlessBlocked(repo.FOLLOWS, userId, req.userId) });
  }

  async unfollow(req: UnfollowRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const other = requireUserId("user_id", req.userId);
    return create(UnfollowResponseSchema, { unfollowed: await repo.removeEdge(this.#db, repo.FOLLOWS, userId, other) });
  }

  async listFollowers(req: ListFollowersRequest, ctx: HandlerContext) {
    const { entries, nextPageToken } = await this.#listOf(ctx, req, repo.FOLLOWS, "incoming", "followers");
    return create(ListFollowersResponseSchema, { followers: entries, nextPageToken });
  }

  async listFollowing(req: ListFollowingRequest, ctx: HandlerContext) {
    const { entries, nextPageToken } = await this.#listOf(ctx, req, repo.FOLLOWS, "outgoing", "following");
    return create(ListFollowingResponseSchema, { following: entries, nextPageToken });
  }

  async addCloseFriend(req: AddCloseFriendRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    return create(AddCloseFriendResponseSchema, { added: await this.#addUnlessBlocked(repo.CLOSE_FRIENDS, userId, req.userId) });
  }

  async removeCloseFriend(req: RemoveCloseFriendRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const other = requireUserId("user_id", req.userId);
    return create(RemoveCloseFriendResponseSchema, { removed: await repo.removeEdge(this.#db, repo.CLOSE_FRIENDS, userId, other) });
  }

  async listCloseFriends(req: ListCloseFriendsRequest, ctx: HandlerContext) {
    const { entries, nextPageToken } = await this.#listOf(ctx, { ...req, userId: "" }, repo.CLOSE_FRIENDS, "outgoing", "close-friends");
    return create(ListCloseFriendsResponseSchema, { closeFriends: entries, nextPageToken });
  }

  /** Blocks and, in the same transaction, cuts every follow and close-friend edge between the two. */
  async block(req: BlockRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const other = this.#requireOther(userId, req.userId);
    if (!(await repo.userExists(this.#db, other))) throw new NotFoundError("user");
    const blocked = await this.#db.transaction().execute(async (tx) => {
      await repo.lockPair(tx, userId, other);
      const added = await repo.addEdge(tx, repo.BLOCKS, userId, other);
      await repo.removeEdgesBetween(tx, repo.FOLLOWS, userId, other);
      await repo.removeEdgesBetween(tx, repo.CLOSE_FRIENDS, userId, other);
      return added;
    });
    return create(BlockResponseSchema, { blocked });
  }

  async unblock(req: UnblockRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const other = requireUserId("user_id", req.userId);
    return create(UnblockResponseSchema, { unblocked: await repo.removeEdge(this.#db, repo.BLOCKS, userId, other) });
  }

  async listBlocked(req: ListBlockedRequest, ctx: HandlerContext) {
    const { entries, nextPageToken } = await this.#listOf(ctx, { ...req, userId: "" }, repo.BLOCKS, "outgoing", "blocked");
    return create(ListBlockedResponseSchema, { blocked: entries, nextPageToken });
  }

  /** A page of one user's edges; the caller's own when user_id is empty. */
  async #listOf(
    ctx: HandlerContext,
    req: { userId: string; pageSize: number; pageToken: string },
    kind: EdgeKind,
    direction: "outgoing" | "incoming",
    tokenKind: string,
  ): Promise<{ entries: SocialListEntry[]; nextPageToken: string }> {
    const { userId } = requireCaller(ctx);
    const owner = req.userId === "" ? userId : requireUserId("user_id", req.userId);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, this.#limits.maxPageSize);
    let after: EdgePosition | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken(tokenKind, req.pageToken, ["o", "t", "u"] as const);
      if (token.o !== owner) throw new InvalidInputError("page_token", "belongs to another list");
      after = { micros: String(token.t), id: String(token.u) };
    }
    if (owner !== userId) await requireReachable(this.#db, userId, owner);
    const rows = await repo.listEdges(this.#db, kind, direction, owner, after, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      entries: page.map((row) => create(SocialListEntrySchema, { userId: row.user_id, since: timestampFromDate(row.created_at) })),
      nextPageToken: rows.length > limit && last ? encodePageToken(tokenKind, { o: owner, t: last.micros, u: last.user_id }) : "",
    };
  }

  #requireOther(userId: string, requested: string): string {
    const other = requireUserId("user_id", requested);
    if (other === userId) throw new InvalidInputError("user_id", "must name another user");
    return other;
  }

  /**
   * Makes a follow or close-friend edge, checked against blocks under the pair's lock: a
   * block committed first makes this NOT_FOUND, one committed later removes the edge.
   */
  async #addUnlessBlocked(kind: EdgeKind, userId: string, requested: string): Promise<boolean> {
    const other = this.#requireOther(userId, requested);
    return this.#db.transaction().execute(async (tx) => {
      await repo.lockPair(tx, userId, other);
      await requireReachable(tx, userId, other);
      return repo.addEdge(tx, kind, userId, other);
    });
  }

}

/** The other user exists and has no block with the caller; otherwise NOT_FOUND, the same either way. */
async function requireReachable(db: Kysely<Database> | Transaction<Database>, userId: string, other: string): Promise<void> {
  if (!(await repo.userExists(db, other)) || (await repo.isBlockedEitherWay(db, userId, other))) throw new NotFoundError("user");
}
