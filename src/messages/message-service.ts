/**
 * MessageService: sending and reading messages, and reacting to them. Sends and reactions go
 * through their batchers (group commit); reads check membership first, so a non-member gets
 * NOT_FOUND, and carry each message's reactions as the caller sees them.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
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
import { findRole } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import type { ReactionBatcher } from "../reactions/reaction-batcher.ts";
import * as reactionHandlers from "../reactions/reaction-handlers.ts";
import { toReactionSummaries } from "../reactions/reaction-mapper.ts";
import { findReactionSummaries, targetKey } from "../reactions/reaction-repository.ts";
import { pageSize, requireSeq, requireUuid } from "../validation.ts";
import { toMessage } from "./message-mapper.ts";
import { findMessage, listMessages, type MessageRow } from "./message-repository.ts";
import type { SendBatcher, SendCommand } from "./send-batcher.ts";

const DEFAULT_MESSAGE_PAGE = 50;
const MAX_CLIENT_MESSAGE_ID = 64;
const MAX_NONCE_BYTES = 64;
const MAX_ALGORITHM_CHARS = 64;
const MAX_KEY_ID_CHARS = 128;
/** Printable ASCII without spaces: UUIDs, ULIDs and similar client ids. */
const CLIENT_MESSAGE_ID = /^[\x21-\x7e]+$/;

export class MessageService implements ServiceImpl<typeof MessageServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #sends: SendBatcher;
  readonly #reactions: ReactionBatcher;
  readonly #limits: Limits;

  constructor(db: Kysely<Database>, sends: SendBatcher, reactions: ReactionBatcher, limits: Limits) {
    this.#db = db;
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
    await this.#requireMember(conversationId, userId);
    const rows = await listMessages(this.#db, conversationId, direction, from, limit + 1);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    const more = rows.length > limit && last !== undefined;
    return create(ListMessagesResponseSchema, {
      messages: await this.#withReactions(page, userId),
      nextPageToken: more ? encodePageToken("messages", { c: conversationId, d: direction === "forward" ? "f" : "b", s: last.seq }) : "",
    });
  }

  async getMessage(req: GetMessageRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const seq = requireSeq("seq", req.seq);
    await this.#requireMember(conversationId, userId);
    const row = await findMessage(this.#db, conversationId, seq);
    if (!row) throw new NotFoundError("message");
    const [message] = await this.#withReactions([row], userId);
    return create(GetMessageResponseSchema, { message });
  }

  addReaction(req: AddReactionRequest, ctx: HandlerContext) {
    return reactionHandlers.addReaction(this.#reactions, req, ctx);
  }

  removeReaction(req: RemoveReactionRequest, ctx: HandlerContext) {
    return reactionHandlers.removeReaction(this.#reactions, req, ctx);
  }

  /** Maps the rows, loading every message's reactions (as the viewer sees them) in one query. */
  async #withReactions(rows: MessageRow[], viewerId: string) {
    const targets = rows.map((r) => ({ conversationId: r.conversation_id, seq: r.seq, userId: viewerId }));
    const reactions = toReactionSummaries(await findReactionSummaries(this.#db, targets));
    return rows.map((row, i) => toMessage(row, reactions.get(targetKey(targets[i]!)) ?? []));
  }

  async #requireMember(conversationId: string, userId: string): Promise<void> {
    if ((await findRole(this.#db, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
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
    const base = { conversationId, senderId, clientMessageId, replyToSeq };
    const { content } = req;
    switch (content.case) {
      case "text": {
        if (content.value.trim() === "") throw new InvalidInputError("text", "must not be blank");
        const bytes = Buffer.byteLength(content.value, "utf8");
        if (bytes > this.#limits.maxMessageBytes) {
          throw new InvalidInputError("text", `is ${bytes} bytes; the limit is ${this.#limits.maxMessageBytes}`);
        }
        return { ...base, content: { kind: "text", text: content.value } };
      }
      case "envelope": {
        const envelope = content.value;
        if (envelope.ciphertext.length === 0) throw new InvalidInputError("envelope.ciphertext", "must not be empty");
        if (envelope.ciphertext.length > this.#limits.maxEnvelopeBytes) {
          throw new InvalidInputError("envelope.ciphertext", `is ${envelope.ciphertext.length} bytes; the limit is ${this.#limits.maxEnvelopeBytes}`);
        }
        if (envelope.nonce.length > MAX_NONCE_BYTES) throw new InvalidInputError("envelope.nonce", `is longer than ${MAX_NONCE_BYTES} bytes`);
        if (envelope.algorithm === "" || envelope.algorithm.length > MAX_ALGORITHM_CHARS) {
          throw new InvalidInputError("envelope.algorithm", `must be 1 to ${MAX_ALGORITHM_CHARS} characters`);
        }
        if (envelope.keyId.length > MAX_KEY_ID_CHARS) throw new InvalidInputError("envelope.key_id", `is longer than ${MAX_KEY_ID_CHARS} characters`);
        return {
          ...base,
          content: {
            kind: "envelope",
            envelope: {
              ciphertext: envelope.ciphertext,
              nonce: envelope.nonce,
              algorithm: envelope.algorithm,
              keyId: envelope.keyId,
              keyEpoch: envelope.keyEpoch,
            },
          },
        };
      }
      default:
        throw new InvalidInputError("content", "one of text or envelope is required");
    }
  }
}
