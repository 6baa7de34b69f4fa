/**
 * Edits and deletes. Each runs in one transaction that locks what it changes, records its event
 * as the last statement and publishes it after commit:
 * - an edit locks the message row, keeps the current version in message_edits and writes the
 *   next one; it never touches seq, mentions or unread counters;
 * - a delete locks the conversation row first (as sends, reads and joins do, so the unread
 *   counters it decrements cannot race them), then the message; it takes the message out of
 *   the counters, erases content, history, mentions and reactions, rewrites the events that
 *   carried the text, and logs moderation when a group admin deleted someone else's message;
 * - account erasure deletes all of a sender's messages the same way, a batch per transaction.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Kysely, Transaction } from "kysely";
import { MessageDeletedSchema, MessageEditedSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { MessageDeletionSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import { ConversationKind, findRole, lockConversation, lockConversationShared, Role } from "../conversations/conversation-repository.ts";
import { deleteBlindTokens, insertBlindTokens } from "../search/blind-index-repository.ts";
import { encryptionViolation } from "./encryption-rules.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { rewriteMessageEvents, type NewEvent } from "../log/event-log.ts";
import { writeWithEvents } from "../log/event-publisher.ts";
import type { EventPublisher } from "../log/event-publisher.ts";
import * as lifecycle from "./message-lifecycle-repository.ts";
import { contentColumns } from "./message-content.ts";
import { toMessage } from "./message-mapper.ts";
import { findMessage, lockConversations, lockMessage, type MessageRow, type MessageWithReplyRow } from "./message-repository.ts";
import type { MessageContent } from "./message-content.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";

export class MessageLifecycle {
  readonly #db: Kysely<Database>;
  readonly #events: EventPublisher;
  readonly #retention: RetentionPolicy;

  constructor(db: Kysely<Database>, events: EventPublisher, retention = new RetentionPolicy(null)) {
    this.#db = db;
    this.#events = events;
    this.#retention = retention;
  }

  /**
   * Replaces the content of the caller's own message with the next version and returns it as
   * it is now (with its reply preview). Blind-index tokens are replaced with the new version's.
   */
  async edit(conversationId: string, seq: bigint, userId: string, content: MessageContent, searchTokens: readonly Uint8Array[]): Promise<MessageWithReplyRow> {
    return this.#write(async (tx, recorded) => {
      const encryption = await lockConversationShared(tx, conversationId);
      if (!encryption || (await findRole(tx, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
      const message = await lockMessage(tx, conversationId, seq);
      const deadline = this.#retention.at(new Date()).deadline(encryption);
      // Past retention it is gone, whether or not the sweeper has deleted it yet.
      if (!message || (deadline !== null && message.created_at <= deadline)) throw new NotFoundError("message");
      if (message.deleted_at) throw new FailedPreconditionError("a deleted message cannot be edited", "MESSAGE_DELETED");
      if (message.sender_id !== userId) throw new PermissionDeniedError("only the sender can edit a message", "NOT_SENDER");
      const wasEncrypted = message.envelope_ciphertext !== null;
      if (wasEncrypted !== (content.kind === "envelope")) {
        throw new InvalidInputError(content.kind, wasEncrypted ? "the message is encrypted: send a new envelope" : "the message is plain text: send new text");
      }
      const encryptionError = encryptionViolation(encryption, content, searchTokens);
      if (encryptionError) throw encryptionError;
      const now = new Date();
      await lifecycle.keepCurrentVersion(tx, conversationId, seq, now);
      await lifecycle.writeNextVersion(tx, conversationId, seq, contentColumns(content), now);
      if (encryption.blindSearch) {
        await deleteBlindTokens(tx, conversationId, seq.toString());
        await insertBlindTokens(tx, [{ conversationId, seq: seq.toString(), keyEpoch: encryption.keyEpoch, tokens: searchTokens }]);
      }
      const edited = (await findMessage(tx, conversationId, seq, deadline))!; // with its reply preview
      recorded.push({
        conversationId,
        actorId: userId,
        kind: { case: "messageEdited", value: create(MessageEditedSchema, { message: toMessage(edited) }) },
      });
      return edited;
    });
  }

  /** Deletes a message for everyone (its sender, or a group admin); deleting a tombstone changes nothing. */
  async delete(conversationId: string, seq: bigint, userId: string): Promise<void> {
    await this.#write(async (tx, recorded) => {
      const conversation = await lockConversation(tx, conversationId);
      const role = conversation && (await findRole(tx, conversationId, userId));
      if (!conversation || role === undefined) throw new NotFoundError("conversation");
      const message = await lockMessage(tx, conversationId, seq);
      if (!message || !this.#retention.at(new Date()).retains(conversation, message.created_at)) throw new NotFoundError("message");
      const moderated = message.sender_id !== userId;
      if (moderated && !(conversation.type === ConversationKind.GROUP && role === Role.ADMIN)) {
        throw new PermissionDeniedError("only the sender or a group admin can delete a message", "NOT_SENDER");
      }
      await eraseLockedMessage(tx, recorded, message, userId, moderated);
    });
  }

  /**
   * Turns up to `limit` of the sender's messages that are not tombstones yet into tombstones,
   * as if the sender deleted each (account erasure): one transaction that locks their
   * conversations in id order (as sends do), then erases content, history, mentions,
   * reactions and blind tokens, rewrites the events that carried the text and records a
   * message_deleted per message. Returns the tombstones; none when nothing is left.
   */
  async deleteAllOf(senderId: string, limit: number): Promise<MessageRow[]> {
    const batch = await lifecycle.findLiveMessagesOf(this.#db, senderId, limit);
    if (batch.length === 0) return [];
    return this.#write(async (tx, recorded) => {
      await lockConversations(tx, [...new Set(batch.map((m) => m.conversation_id))]);
      // Under the locks: a concurrent delete (or a second run) may have been first.
      const live = await lifecycle.lockLiveMessages(tx, batch);
      await lifecycle.uncountDeleted(tx, live);
      const tombstones = await lifecycle.eraseMessages(tx, live, senderId, new Date());
      const byConversation = new Map<string, Map<bigint, Message>>();
      for (const tombstone of tombstones) {
        const erased = byConversation.get(tombstone.conversation_id) ?? new Map<bigint, Message>();
        erased.set(BigInt(tombstone.seq), toMessage(tombstone));
        byConversation.set(tombstone.conversation_id, erased);
      }
      for (const [conversationId, erased] of byConversation) {
        await rewriteMessageEvents(tx, conversationId, [...erased.keys()], (event) => eraseFromEvent(event, erased));
      }
      recorded.push(...tombstones.map((tombstone) => deletedEvent(tombstone, false)));
      return tombstones;
    });
  }

  #write<T>(work: (tx: Transaction<Database>, recorded: NewEvent[]) => Promise<T>): Promise<T> {
    return writeWithEvents(this.#db, this.#events, work);
  }
}

/**
 * An operator's delete (moderation), inside the operator's transaction: no membership needed.
 * False when the message does not exist; a tombstone stays as it is.
 */
export async function eraseMessageAsOperator(tx: Transaction<Database>, recorded: NewEvent[], conversationId: string, seq: bigint, operatorId: string): Promise<boolean> {
  if (!(await lockConversation(tx, conversationId))) return false;
  const message = await lockMessage(tx, conversationId, seq);
  if (!message) return false;
  await eraseLockedMessage(tx, recorded, message, operatorId, true);
  return true;
}

/**
 * Takes a locked message out of the unread counters, erases its content, history, mentions,
 * reactions and blind tokens, rewrites the events that carried its text and records the
 * deletion event. A tombstone is left as it is.
 */
async function eraseLockedMessage(tx: Transaction<Database>, recorded: NewEvent[], message: MessageRow, deletedBy: string, moderated: boolean): Promise<void> {
  if (message.deleted_at) return;
  const seq = BigInt(message.seq);
  const at = [{ conversation_id: message.conversation_id, seq: message.seq }];
  await lifecycle.uncountDeleted(tx, at);
  const [tombstone] = await lifecycle.eraseMessages(tx, at, deletedBy, new Date());
  if (moderated) await lifecycle.recordModeration(tx, tombstone!);
  await rewriteMessageEvents(tx, message.conversation_id, [seq], (event) => eraseFromEvent(event, new Map([[seq, toMessage(tombstone!)]])));
  recorded.push(deletedEvent(tombstone!, moderated));
}

/**
 * The event (message_created / message_edited) without the deleted messages' content: a
 * deleted message's own event carries its tombstone instead, a reply's event quotes it as deleted.
 */
function eraseFromEvent(event: Event, tombstones: ReadonlyMap<bigint, Message>): Event {
  if (event.kind.case !== "messageCreated" && event.kind.case !== "messageEdited") return event;
  const carried = event.kind.value.message;
  const own = carried && tombstones.get(carried.seq);
  if (own) event.kind.value.message = own;
  else if (carried?.replyTo && tombstones.has(carried.replyTo.seq)) carried.replyTo.content = { case: "deleted", value: true };
  return event;
}

function deletedEvent(tombstone: MessageRow, moderated: boolean): NewEvent {
  return {
    conversationId: tombstone.conversation_id,
    actorId: tombstone.deleted_by!,
    kind: {
      case: "messageDeleted",
      value: create(MessageDeletedSchema, {
        messageSeq: BigInt(tombstone.seq),
        messageId: tombstone.id,
        deletion: create(MessageDeletionSchema, { deletedBy: tombstone.deleted_by!, deletedAt: timestampFromDate(tombstone.deleted_at!) }),
        moderated,
      }),
    },
  };
}
