/**
 * MessageService: sending and reading messages, and reacting to them. Sends and reactions go
 * through their batchers (group commit); reads check membership in the statement that reads
 * (a non-member gets NOT_FOUND), and carry each message's reactions as the caller sees them.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  DeleteMessageResponseSchema,
  EditMessageResponseSchema,
  ListMessageEditsResponseSchema,
  ListModerationLogResponseSchema,
  type DeleteMessageRequest,
  type EditMessageRequest,
  type ListMessageEditsRequest,
  type ListModerationLogRequest,
  GetMessageResponseSchema,
  type AddReactionRequest,
  ListDirection,
  ListMessagesResponseSchema,
  SendMessageResponseSchema,
  type GetMessageRequest,
  type ListMessagesRequest,
  type MessageService as MessageServiceDesc,
  type RemoveReactionRequest,
  type SendMessageRequest,
} from "../../gen/parley/v1/message_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits } from "../config.ts";
import { findRole, Role } from "../conversations/conversation-repository.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import type { EventPublisher } from "../log/event-publisher.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import type { ReactionBatcher } from "../reactions/reaction-batcher.ts";
import * as reactionHandlers from "../reactions/reaction-handlers.ts";
import { toReactionList } from "../reactions/reaction-mapper.ts";
import { pageSize, requireSeq, requireUserId, requireUuid } from "../validation.ts";
import { parseContent } from "./message-content.ts";
import { parseSearchTokens } from "./encryption-rules.ts";
import { toMessage } from "./message-mapper.ts";
import { toMessagesWithReactions } from "./messages-with-reactions.ts";
import { MessageLifecycle } from "./message-lifecycle.ts";
import * as lifecycle from "./message-lifecycle-repository.ts";
import { toMessageEdit, toModerationEntry } from "./message-lifecycle-mapper.ts";
import { findMessageAsMember, listMessagesAsMember, type MemberReadRow } from "./message-repository.ts";
import type { SendBatcher, SendCommand } from "./send-batcher.ts";

const DEFAULT_MESSAGE_PAGE = 50;
const MAX_CLIENT_MESSAGE_ID = 64;
const MAX_MENTIONS = 50;
/** Printable ASCII without spaces: UUIDs, ULIDs and similar client ids. */
const CLIENT_MESSAGE_ID = /^[\x21-\x7e]+$/;

export class MessageService implements ServiceImpl<typeof MessageServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #sends: SendBatcher;
  readonly #reactions: ReactionBatcher;
  readonly #limits: Limits;
  readonly #lifecycle: MessageLifecycle;
  readonly #retention: RetentionPolicy;

  /** `retention` is the deployment's (conversations' own retentions are read with them); none by default. */
  constructor(db: Kysely<Database>, sends: SendBatcher, reactions: ReactionBatcher, limits: Limits, events: EventPublisher, retention = new RetentionPolicy(null)) {
    this.#db = db;
    this.#retention = retention;
    this.#lifecycle = new MessageLifecycle(db, events, retention);
    this.#sends = sends;
    this.#reactions = reactions;
    this.#limits = limits;
  }

  async sendMessage(req: SendMessageRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const row = await this.#sends.send(this.toCommand(req, userId));
    return create(SendMessageResponseSchema, { message: toMessage(row) });
  }

  async listMessages(req: ListMessagesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const limit = pageSize(req.pageSize, DEFAULT_MESSAGE_PAGE, this.#limits.maxPageSize);
    let direction: "backward" | "forward" = req.direction === ListDirection.FORWARD ? "forward" : "backward";
    let from: bigint | null = req.startSeq > 0n ? req.startSeq : null;
    if (req.startSeq < 0n) throw new InvalidInputError("start_seq", "must not be negative");
    if (req.pageToken !== "") {
      const token = decodePageToken("messages", req.pageToken, ["c", "d", "s"] as const);
      if (token.c !== conversationId) throw new InvalidInputError("page_token", "belongs to another conversation");
      direction = token.d === "f" ? "forward" : "backward";
      from = BigInt(String(token.s));
    }
    const rows = await listMessagesAsMember(this.#db, userId, conversationId, direction, from, limit + 1, this.#retention.at(new Date()));
    if (rows === null) throw new NotFoundError("conversation");
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    const more = rows.length > limit && last !== undefined;
    return create(ListMessagesResponseSchema, {
      messages: page.map(toMemberMessage),
      nextPageToken: more ? encodePageToken("messages", { c: conversationId, d: direction === "forward" ? "f" : "b", s: last.seq }) : "",
    });
  }

  async getMessage(req: GetMessageRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq);
    return create(GetMessageResponseSchema, { message: await this.#read(conversationId, seq, userId) });
  }

  addReaction(req: AddReactionRequest, ctx: HandlerContext) {
    return reactionHandlers.addReaction(this.#reactions, req, ctx);
  }

  removeReaction(req: RemoveReactionRequest, ctx: HandlerContext) {
    return reactionHandlers.removeReaction(this.#reactions, req, ctx);
  }

  async editMessage(req: EditMessageRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq);
    const edited = await this.#lifecycle.edit(conversationId, seq, userId, parseContent(req.content, this.#limits), parseSearchTokens(req.searchTokens));
    const [message] = await toMessagesWithReactions(this.#db, [edited], userId);
    return create(EditMessageResponseSchema, { message });
  }

  async deleteMessage(req: DeleteMessageRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq);
    await this.#lifecycle.delete(conversationId, seq, userId);
    return create(DeleteMessageResponseSchema, { message: await this.#read(conversationId, seq, userId) });
  }

  async listMessageEdits(req: ListMessageEditsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq);
    const limit = pageSize(req.pageSize, DEFAULT_MESSAGE_PAGE, this.#limits.maxPageSize);
    let afterVersion = 0;
    if (req.pageToken !== "") {
      const token = decodePageToken("message-edits", req.pageToken, ["c", "s", "v"] as const);
      if (token.c !== conversationId || String(token.s) !== seq.toString()) throw new InvalidInputError("page_token", "belongs to another message");
      afterVersion = Number(token.v);
    }
    await this.#read(conversationId, seq, userId); // members only, and the message must exist
    const rows = await lifecycle.listEdits(this.#db, conversationId, seq, afterVersion, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListMessageEditsResponseSchema, {
      edits: page.map(toMessageEdit),
      nextPageToken: rows.length > limit && last ? encodePageToken("message-edits", { c: conversationId, s: seq.toString(), v: last.version }) : "",
    });
  }

  async listModerationLog(req: ListModerationLogRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const limit = pageSize(req.pageSize, DEFAULT_MESSAGE_PAGE, this.#limits.maxPageSize);
    let after: lifecycle.ModerationCursor | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("moderation", req.pageToken, ["c", "d", "s"] as const);
      if (token.c !== conversationId) throw new InvalidInputError("page_token", "belongs to another conversation");
      after = { deletedUs: String(token.d), seq: String(token.s) };
    }
    const role = await findRole(this.#db, conversationId, userId);
    if (role === undefined) throw new NotFoundError("conversation");
    if (role !== Role.ADMIN) throw new PermissionDeniedError("only group admins can read the moderation log", "NOT_ADMIN");
    const rows = await lifecycle.listModeration(this.#db, conversationId, limit + 1, after);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListModerationLogResponseSchema, {
      entries: page.map(toModerationEntry),
      nextPageToken: rows.length > limit && last ? encodePageToken("moderation", { c: conversationId, d: last.deleted_us, s: last.message_seq }) : "",
    });
  }

  /** One message as a member sees it; NOT_FOUND for non-members, unknown seqs and messages past retention. */
  async #read(conversationId: string, seq: bigint, userId: string) {
    const rows = await findMessageAsMember(this.#db, userId, conversationId, seq, this.#retention.at(new Date()));
    if (rows === null) throw new NotFoundError("conversation");
    if (rows.length === 0) throw new NotFoundError("message");
    return toMemberMessage(rows[0]!);
  }

  /**
   * Validates a send completely before it is queued, so a batch never holds a malformed one.
   * Public so that other ways of sending (a reply to a story) apply exactly the same checks.
   */
  toCommand(req: SendMessageRequest, senderId: string): SendCommand {
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const clientMessageId = req.clientMessageId;
    if (clientMessageId === "") throw new InvalidInputError("client_message_id", "is required (a client-generated id that makes retries safe)");
    if (clientMessageId.length > MAX_CLIENT_MESSAGE_ID || !CLIENT_MESSAGE_ID.test(clientMessageId)) {
      throw new InvalidInputError("client_message_id", `must be 1 to ${MAX_CLIENT_MESSAGE_ID} printable ASCII characters without spaces`);
    }
    const replyToSeq = req.replyToSeq === undefined ? null : requireSeq("reply_to_seq", req.replyToSeq);
    const mentionUserIds = [...new Set(req.mentionUserIds.map((id, i) => requireUserId(`mention_user_ids[${i}]`, id)))];
    if (mentionUserIds.length > MAX_MENTIONS) throw new InvalidInputError("mention_user_ids", `must name at most ${MAX_MENTIONS} users`);
    return {
      conversationId,
      senderId,
      clientMessageId,
      replyToSeq,
      content: parseContent(req.content, this.#limits),
      mentionUserIds,
      mentionEveryone: req.mentionEveryone,
      searchTokens: parseSearchTokens(req.searchTokens),
    };
  }
}

/** A message read as a member, with the reactions read with it. */
function toMemberMessage(row: MemberReadRow) {
  return toMessage(row, toReactionList(row.reactions));
}
