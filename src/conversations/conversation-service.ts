/**
 * ConversationService: creating conversations and managing members. Authorization rules:
 * a non-member gets NOT_FOUND for everything (existence is never revealed); a member who is
 * not an admin gets PERMISSION_DENIED for admin actions (they can see the group anyway).
 * Every multi-row change runs in one transaction that first locks the conversation row, so
 * member counts, the at-least-one-admin rule and concurrent sends stay consistent.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely, Transaction } from "kysely";
import { ConversationType, MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import {
  AddMembersResponseSchema,
  CreateConversationResponseSchema,
  GetConversationResponseSchema,
  GetReadStateResponseSchema,
  ListConversationsResponseSchema,
  ListMembersResponseSchema,
  MarkReadResponseSchema,
  RemoveMemberResponseSchema,
  SetMemberRoleResponseSchema,
  UpdateConversationResponseSchema,
  type AddMembersRequest,
  type ConversationService as ConversationServiceDesc,
  type CreateConversationRequest,
  type GetConversationRequest,
  type GetReadStateRequest,
  type ListConversationsRequest,
  type ListMembersRequest,
  type MarkReadRequest,
  type RemoveMemberRequest,
  type SetMemberRoleRequest,
  type UpdateConversationRequest,
} from "../../gen/parley/v1/conversation_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import type { NewEvent } from "../log/event-log.ts";
import { writeWithEvents } from "../log/event-publisher.ts";
import type { EventPublisher } from "../log/event-publisher.ts";
import { newId } from "../ids.ts";
import * as events from "./conversation-events.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { findUsers } from "../users/user-repository.ts";
import { parseRetention } from "../retention/retention-duration.ts";
import type { RetentionPolicy } from "../retention/retention-policy.ts";
import { boundedText, pageSize, requireSeq, requireUserId, requireUuid } from "../validation.ts";
import { toConversation, toMember, toReadPosition } from "./conversation-mapper.ts";
import * as repo from "./conversation-repository.ts";

const DEFAULT_CONVERSATION_PAGE = 20;
const MAX_CONVERSATION_PAGE = 100;
const DEFAULT_MEMBER_PAGE = 100;

/** Thrown inside a transaction to roll it back when a concurrent DIRECT create won. */
class DirectPairTaken extends Error {}

export class ConversationService implements ServiceImpl<typeof ConversationServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #limits: Limits;
  readonly #events: EventPublisher;
  readonly #retention: RetentionPolicy;

  constructor(db: Kysely<Database>, limits: Limits, events: EventPublisher, retention: RetentionPolicy) {
    this.#db = db;
    this.#limits = limits;
    this.#events = events;
    this.#retention = retention;
  }

  async createConversation(req: CreateConversationRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (req.blindSearch && !req.encrypted) throw new InvalidInputError("blind_search", "is only for encrypted conversations");
    switch (req.type) {
      case ConversationType.DIRECT:
        return this.#createDirect(userId, req);
      case ConversationType.GROUP:
        return this.#createGroup(userId, req);
      default:
        throw new InvalidInputError("type", "must be CONVERSATION_TYPE_DIRECT or CONVERSATION_TYPE_GROUP");
    }
  }

  async #createDirect(userId: string, req: CreateConversationRequest) {
    if (req.memberIds.length !== 1) throw new InvalidInputError("member_ids", "must name exactly one other user for a DIRECT conversation");
    if (req.name !== "" || req.description !== "") {
      throw new InvalidInputError(req.name !== "" ? "name" : "description", "must be empty for a DIRECT conversation");
    }
    const peerId = requireUserId("member_ids[0]", req.memberIds[0]!);
    if (peerId === userId) throw new InvalidInputError("member_ids[0]", "must not be the caller");
    await this.#requireUsersExist("member_ids", [peerId]);

    const { encrypted, blindSearch } = req;
    let conversationId = await repo.findDirectConversationId(this.#db, userId, peerId, encrypted);
    let created = false;
    if (conversationId === undefined) {
      const id = newId();
      try {
        await this.#write(async (tx, recorded) => {
          const members = [
            { userId, role: repo.Role.MEMBER },
            { userId: peerId, role: repo.Role.MEMBER },
          ];
          await repo.insertConversation(tx, { id, type: repo.ConversationKind.DIRECT, name: "", description: "", createdBy: userId, members, encrypted, blindSearch });
          if (!(await repo.claimDirectPair(tx, userId, peerId, id, encrypted))) throw new DirectPairTaken();
          const now = new Date();
          recorded.push(...members.map((m) => events.memberAdded(id, userId, m.userId, m.role, now)));
        });
        conversationId = id;
        created = true;
      } catch (error) {
        if (!(error instanceof DirectPairTaken)) throw error;
        conversationId = await repo.findDirectConversationId(this.#db, userId, peerId, encrypted);
      }
    }
    const view = conversationId && (await repo.findConversationView(this.#db, conversationId, userId, this.#cutoff()));
    if (!view) throw new Error("the direct conversation vanished after it was created");
    return create(CreateConversationResponseSchema, { conversation: toConversation(view), created });
  }

  async #createGroup(userId: string, req: CreateConversationRequest) {
    const others = [...new Set(req.memberIds.map((id, i) => requireUserId(`member_ids[${i}]`, id)))].filter((id) => id !== userId);
    const total = others.length + 1;
    if (total < 3 || total > this.#limits.maxGroupMembers) {
      throw new InvalidInputError("member_ids", `a group has 3 to ${this.#limits.maxGroupMembers} members including the creator; this one would have ${total}`);
    }
    const name = boundedText("name", req.name.trim(), this.#limits.maxNameLength);
    if (name === "") throw new InvalidInputError("name", "is required for a GROUP conversation");
    const description = boundedText("description", req.description, this.#limits.maxDescriptionLength);
    await this.#requireUsersExist("member_ids", req.memberIds);

    const id = newId();
    await this.#write(async (tx, recorded) => {
      const members = [{ userId, role: repo.Role.ADMIN }, ...others.map((other) => ({ userId: other, role: repo.Role.MEMBER }))];
      await repo.insertConversation(tx, {
        id,
        type: repo.ConversationKind.GROUP,
        name,
        description,
        createdBy: userId,
        members,
        encrypted: req.encrypted,
        blindSearch: req.blindSearch,
      });
      const now = new Date();
      recorded.push(...members.map((m) => events.memberAdded(id, userId, m.userId, m.role, now)));
    });
    const view = await repo.findConversationView(this.#db, id, userId, this.#cutoff());
    if (!view) throw new Error("the group vanished after it was created");
    return create(CreateConversationResponseSchema, { conversation: toConversation(view), created: true });
  }

  async getConversation(req: GetConversationRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const view = await repo.findConversationView(this.#db, requireUuid("conversation_id", req.conversationId), userId, this.#cutoff());
    if (!view) throw new NotFoundError("conversation");
    return create(GetConversationResponseSchema, { conversation: toConversation(view) });
  }

  async listConversations(req: ListConversationsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_CONVERSATION_PAGE, Math.min(MAX_CONVERSATION_PAGE, this.#limits.maxPageSize));
    let after: repo.ActivityCursor | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("conversations", req.pageToken, ["a", "i"] as const);
      after = { activityUs: String(token.a), id: requireUuid("page_token", String(token.i)) };
    }
    const rows = await repo.listConversationViews(this.#db, userId, limit + 1, after, this.#cutoff());
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListConversationsResponseSchema, {
      conversations: page.map(toConversation),
      nextPageToken: rows.length > limit && last ? encodePageToken("conversations", { a: last.activity_us, i: last.id }) : "",
    });
  }

  /**
   * Groups: admins change the name, the description and the message retention. DIRECT: either
   * member changes the retention (a DIRECT conversation has no name or description).
   */
  async updateConversation(req: UpdateConversationRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const name = req.name === undefined ? undefined : boundedText("name", req.name.trim(), this.#limits.maxNameLength);
    if (name === "") throw new InvalidInputError("name", "must not be empty");
    const description = req.description === undefined ? undefined : boundedText("description", req.description, this.#limits.maxDescriptionLength);
    const retention = req.messageRetention === undefined ? undefined : parseRetention("message_retention", req.messageRetention);
    await this.#write(async (tx, recorded) => {
      const locked = await repo.lockConversation(tx, conversationId);
      const role = locked && (await repo.findRole(tx, conversationId, userId));
      if (!locked || role === undefined) throw new NotFoundError("conversation");
      if (locked.type === repo.ConversationKind.GROUP) {
        if (role !== repo.Role.ADMIN) throw new PermissionDeniedError("only group admins can do this", "NOT_ADMIN");
      } else if (name !== undefined || description !== undefined || retention === undefined) {
        throw new FailedPreconditionError("a DIRECT conversation's members and details cannot change (its message retention can)", "NOT_A_GROUP");
      }
      if (name !== undefined || description !== undefined) {
        await repo.updateConversationDetails(tx, conversationId, {
          ...(name !== undefined && { name }),
          ...(description !== undefined && { description }),
        });
      }
      if (retention !== undefined) await repo.setMessageRetention(tx, conversationId, retention, this.#cutoff());
      const after = await repo.findConversationDetails(tx, conversationId);
      recorded.push(
        events.conversationUpdated(conversationId, userId, {
          name: after.name,
          description: after.description,
          retentionSeconds: after.message_retention_seconds,
          effectiveRetentionSeconds: this.#retention.effectiveSeconds(after.message_retention_seconds),
        }),
      );
    });
    return create(UpdateConversationResponseSchema, { conversation: await this.#view(conversationId, userId) });
  }

  async addMembers(req: AddMembersRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    if (req.userIds.length === 0) throw new InvalidInputError("user_ids", "must name at least one user");
    if (req.userIds.length > this.#limits.maxGroupMembers) {
      throw new InvalidInputError("user_ids", `must name at most ${this.#limits.maxGroupMembers} users`);
    }
    const candidates = [...new Set(req.userIds.map((id, i) => requireUserId(`user_ids[${i}]`, id)))];
    await this.#requireUsersExist("user_ids", req.userIds);
    const added = await this.#asGroupAdmin(conversationId, userId, async (tx, locked, recorded) => {
      const existing = await repo.findMemberIds(tx, conversationId, candidates);
      const newcomers = candidates.filter((id) => !existing.has(id));
      if (locked.member_count + newcomers.length > this.#limits.maxGroupMembers) {
        throw new InvalidInputError("user_ids", `would make the group larger than ${this.#limits.maxGroupMembers} members`);
      }
      const rows = newcomers.length === 0 ? [] : await repo.insertMembers(tx, conversationId, newcomers, locked.last_seq);
      recorded.push(...rows.map((m) => events.memberAdded(conversationId, userId, m.user_id, m.role, m.joined_at, BigInt(m.last_read_seq))));
      return rows;
    });
    return create(AddMembersResponseSchema, {
      added: added.map(toMember),
      conversation: await this.#view(conversationId, userId),
    });
  }

  async removeMember(req: RemoveMemberRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const targetId = requireUserId("user_id", req.userId);
    await this.#write(async (tx, recorded) => {
      const { locked, role } = await this.#lockGroupAsMember(tx, conversationId, userId);
      const leaving = targetId === userId;
      if (!leaving && role !== repo.Role.ADMIN) throw new PermissionDeniedError("only group admins can remove other members", "NOT_ADMIN");
      if (!(await removeLocked(tx, locked, conversationId, userId, targetId, leaving ? role : undefined, recorded))) throw new NotFoundError("member");
    });
    return create(RemoveMemberResponseSchema, {});
  }

  /**
   * Takes the user out of every conversation they are a member of (account erasure), one
   * transaction each, as if they left: a group keeps an admin, an encrypted conversation moves
   * to its next key epoch. A DIRECT conversation stays with the other member, who keeps the
   * thread; its pair is released, so the same two ids start a new conversation later rather
   * than find this one. Returns how many conversations the user left.
   */
  async leaveAll(userId: string): Promise<number> {
    let left = 0;
    for (const conversationId of await repo.findConversationIdsOf(this.#db, userId)) {
      const changed = await this.#write(async (tx, recorded) => {
        const locked = await repo.lockConversation(tx, conversationId);
        const role = locked && (await repo.findRole(tx, conversationId, userId));
        if (!locked || role === undefined) return false; // left meanwhile
        if (locked.type === repo.ConversationKind.DIRECT) await repo.releaseDirectPair(tx, conversationId);
        return removeLocked(tx, locked, conversationId, userId, userId, role, recorded);
      });
      if (changed) left++;
    }
    return left;
  }

  async setMemberRole(req: SetMemberRoleRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const targetId = requireUserId("user_id", req.userId);
    const role =
      req.role === MemberRole.ADMIN ? repo.Role.ADMIN : req.role === MemberRole.MEMBER ? repo.Role.MEMBER : null;
    if (role === null) throw new InvalidInputError("role", "must be MEMBER_ROLE_MEMBER or MEMBER_ROLE_ADMIN");
    const member = await this.#asGroupAdmin(conversationId, userId, async (tx, _locked, recorded) => {
      const updated = await repo.updateMemberRole(tx, conversationId, targetId, role);
      if (!updated) throw new NotFoundError("member");
      if (role === repo.Role.MEMBER && (await repo.countAdmins(tx, conversationId)) === 0) {
        throw new FailedPreconditionError("a group must keep at least one admin; make someone else admin first", "LAST_ADMIN");
      }
      recorded.push(events.memberRoleChanged(conversationId, userId, targetId, role));
      return updated;
    });
    return create(SetMemberRoleResponseSchema, { member: toMember(member) });
  }

  async listMembers(req: ListMembersRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const limit = pageSize(req.pageSize, DEFAULT_MEMBER_PAGE, Math.max(this.#limits.maxPageSize, this.#limits.maxGroupMembers));
    let after: repo.JoinCursor | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("members", req.pageToken, ["c", "j", "u"] as const);
      if (token.c !== conversationId) throw new InvalidInputError("page_token", "belongs to another conversation");
      after = { joinedUs: String(token.j), userId: String(token.u) };
    }
    if ((await repo.findRole(this.#db, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
    const rows = await repo.listMembers(this.#db, conversationId, limit + 1, after);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListMembersResponseSchema, {
      members: page.map(toMember),
      nextPageToken:
        rows.length > limit && last ? encodePageToken("members", { c: conversationId, j: last.joined_us, u: last.user_id }) : "",
    });
  }

  async markRead(req: MarkReadRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq, { allowZero: true });
    const view = await repo.findConversationView(this.#db, conversationId, userId, this.#cutoff());
    if (!view) throw new NotFoundError("conversation");
    if (seq > BigInt(view.last_seq)) throw new InvalidInputError("seq", `is beyond the conversation's last message (${view.last_seq})`);
    const counters = await this.#write(async (tx, recorded) => {
      // Shared lock: sends, deletes and joins (which change the counters) wait for this one.
      if (!(await repo.lockConversationShared(tx, conversationId))) throw new NotFoundError("conversation");
      const moved = await repo.advanceReadPosition(tx, conversationId, userId, seq);
      if (moved === undefined) return repo.findReadCounters(tx, conversationId, userId);
      recorded.push(events.readPositionMoved(conversationId, userId, BigInt(moved.last_read_seq)));
      return moved;
    });
    if (!counters) throw new NotFoundError("conversation"); // left in the meantime
    return create(MarkReadResponseSchema, {
      lastReadSeq: BigInt(counters.last_read_seq),
      unreadCount: BigInt(counters.unread_count),
      unreadMentionCount: BigInt(counters.unread_mention_count),
    });
  }

  async getReadState(req: GetReadStateRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    if ((await repo.findRole(this.#db, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
    const rows = await repo.listReadPositions(this.#db, conversationId);
    return create(GetReadStateResponseSchema, { positions: rows.map(toReadPosition) });
  }

  async #view(conversationId: string, userId: string) {
    const view = await repo.findConversationView(this.#db, conversationId, userId, this.#cutoff());
    if (!view) throw new NotFoundError("conversation");
    return toConversation(view);
  }

  /** Locks a group the caller is a member of, or fails as NOT_FOUND / FAILED_PRECONDITION. */
  async #lockGroupAsMember(tx: Transaction<Database>, conversationId: string, userId: string) {
    const locked = await repo.lockConversation(tx, conversationId);
    const role = locked && (await repo.findRole(tx, conversationId, userId));
    if (!locked || role === undefined) throw new NotFoundError("conversation");
    if (locked.type !== repo.ConversationKind.GROUP) {
      throw new FailedPreconditionError("a DIRECT conversation's members and details cannot change", "NOT_A_GROUP");
    }
    return { locked, role };
  }

  /** Runs work in a transaction that holds the group's lock, if the caller is its admin. */
  async #asGroupAdmin<T>(
    conversationId: string,
    userId: string,
    work: (tx: Transaction<Database>, locked: { member_count: number; last_seq: string }, recorded: NewEvent[]) => Promise<T>,
  ): Promise<T> {
    return this.#write(async (tx, recorded) => {
      const { locked, role } = await this.#lockGroupAsMember(tx, conversationId, userId);
      if (role !== repo.Role.ADMIN) throw new PermissionDeniedError("only group admins can do this", "NOT_ADMIN");
      return work(tx, locked, recorded);
    });
  }

  /** The retention rule at this moment (previews of messages past it are left out). */
  #cutoff() {
    return this.#retention.at(new Date());
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#db, this.#events, work);
  }

  /**
   * Fails naming each position of `field` whose user has no row. Runs outside transactions:
   * the embedded database has one connection, which an open transaction holds.
   */
  async #requireUsersExist(field: string, userIds: readonly string[]): Promise<void> {
    const known = new Set((await findUsers(this.#db, [...new Set(userIds)])).map((u) => u.id));
    const violations = userIds.flatMap((id, i) =>
      known.has(id) ? [] : [{ field: `${field}[${i}]`, description: `no user "${id}"; users exist once they have called Parley` }],
    );
    if (violations.length > 0) throw new InvalidInputError(violations);
  }
}

/**
 * Removes a member from a conversation whose lock the caller holds and records it; false when
 * they were not a member. `leavingRole` is the role of a member who leaves by themselves.
 */
async function removeLocked(
  tx: Transaction<Database>,
  locked: { encrypted: boolean },
  conversationId: string,
  actorId: string,
  targetId: string,
  leavingRole: number | undefined,
  recorded: NewEvent[],
): Promise<boolean> {
  if (!(await repo.deleteMember(tx, conversationId, targetId))) return false;
  // Nothing sent from now on may be readable with a key the removed member holds.
  const keyEpoch = locked.encrypted ? await repo.advanceKeyEpoch(tx, conversationId) : 0;
  recorded.push(events.memberRemoved(conversationId, actorId, targetId, keyEpoch));
  // A group always keeps an admin: when the last one leaves, the longest-standing member takes over.
  if (leavingRole === repo.Role.ADMIN && (await repo.countAdmins(tx, conversationId)) === 0) {
    const promoted = await repo.promoteEarliestMember(tx, conversationId);
    if (promoted) recorded.push(events.memberRoleChanged(conversationId, actorId, promoted, repo.Role.ADMIN));
  }
  return true;
}
