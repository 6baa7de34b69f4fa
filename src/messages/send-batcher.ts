/**
 * Group commit for SendMessage. Concurrent sends are queued and written together: one
 * transaction locks the conversations involved (in id order), checks membership and
 * idempotency keys, assigns each send the next seq of its conversation and inserts all the
 * messages at once. The cost of a commit is shared by the whole batch, which is what lets
 * one node persist thousands of sends a second (see the README's benchmark).
 *
 * Each caller still gets its own result: a send that is not allowed or not valid fails
 * alone, inside the batch, without consuming a seq. If the transaction itself fails, every
 * send of the batch is retried on its own, so one bad send never fails its neighbours.
 * Per-conversation order follows queue order within a batch and lock order across batches.
 */
import type { Kysely, Transaction } from "kysely";
import { GroupCommit, uniqueBy, type BatchOutcome, type GroupCommitOptions } from "../db/group-commit.ts";
import type { Database } from "../db/schema.ts";
import { ConversationKind, Role } from "../conversations/conversation-repository.ts";
import { InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { create } from "@bufbuild/protobuf";
import { MessageCreatedSchema } from "../../gen/parley/v1/event_pb.ts";
import { appendEvents, type EventLogLayout, type StoredEvent } from "../log/event-log.ts";
import { partitionOf } from "../log/partitions.ts";
import { newId } from "../ids.ts";
import { contentColumns, type MessageContent } from "./message-content.ts";
import { blockedDirectConversations, conversationUnavailable } from "../social/direct-block.ts";
import { toMessage } from "./message-mapper.ts";
import { encryptionViolation } from "./encryption-rules.ts";
import { insertBlindTokens, type MessageTokens } from "../search/blind-index-repository.ts";
import * as repo from "./message-repository.ts";
import type { MessageRow, NewMessageRow } from "./message-repository.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";

/** A validated send, ready to be stored. */
export interface SendCommand {
  conversationId: string;
  senderId: string;
  clientMessageId: string;
  replyToSeq: bigint | null;
  content: MessageContent;
  /** Users mentioned (deduplicated); each must be a member when the batch is written. */
  mentionUserIds?: readonly string[];
  /** Mentions everyone in the group (group admins only). */
  mentionEveryone?: boolean;
  /** The story this message replies to (StoryService.ReplyToStory). */
  story?: { storyId: string; authorId: string };
  /** Blind-index search tokens (validated, deduplicated), for conversations with blind search. */
  searchTokens?: readonly Uint8Array[];
}

/** Batch size, concurrency and the after-commit hook (it receives the message-created events). */
export interface SendBatcherOptions extends GroupCommitOptions {
  /** The deployment's retention: a reply quoting a message past retention gets no preview. None by default. */
  retention?: RetentionPolicy;
}

/** While a batch is written: a stored row, the index of an identical send in the same batch, or an error. */
type Outcome = { row: MessageRow } | { sameAs: number } | { error: Error };

export class SendBatcher {
  readonly #queue: GroupCommit<SendCommand, MessageRow>;
  readonly #log: EventLogLayout;
  readonly #retention: RetentionPolicy;

  constructor(db: Kysely<Database>, log: EventLogLayout, { retention = new RetentionPolicy(null), ...options }: SendBatcherOptions = {}) {
    this.#log = log;
    this.#retention = retention;
    const partitionOfSend = (command: SendCommand) => partitionOf(command.conversationId, log.partitions);
    this.#queue = new GroupCommit(db, (tx, commands) => this.#write(tx, commands), partitionOfSend, options);
  }

  /** Stores the message (or finds the one a retry refers to) and returns its row. */
  send(command: SendCommand): Promise<MessageRow> {
    return this.#queue.submit(command);
  }

  /** Resolves once every queued send has been written. */
  drain(): Promise<void> {
    return this.#queue.drain();
  }

  async #write(tx: Transaction<Database>, commands: SendCommand[]): Promise<{ outcomes: BatchOutcome<MessageRow>[]; events: StoredEvent[] }> {
    const conversationIds = [...new Set(commands.map((c) => c.conversationId))];
    const locked = await repo.lockConversations(tx, conversationIds);
    const lastSeqs = new Map([...locked].map(([id, c]) => [id, c.lastSeq]));
    const people = commands.flatMap((c) => [c.senderId, ...(c.mentionUserIds ?? [])].map((userId) => ({ conversationId: c.conversationId, userId })));
    // Blocks only stop DIRECT conversations, so only those are looked up.
    const direct = conversationIds.filter((id) => locked.get(id)?.type === ConversationKind.DIRECT);
    const { roles, blockedDirect, stored: storedAt } = await repo.findSendLookups(
      tx,
      uniqueBy(people, (p) => `${p.conversationId}/${p.userId}`),
      blockedDirectConversations(direct),
      commands,
    );
    // A retry is answered with the message its first attempt stored.
    const storedRows = storedAt.length === 0 ? [] : await repo.findMessagesWithReply(tx, storedAt);
    const stored = new Map(storedRows.map((row) => [keyOf({ conversationId: row.conversation_id, senderId: row.sender_id, clientMessageId: row.client_message_id }), row]));

    const outcomes: Outcome[] = [];
    const newRows: NewMessageRow[] = [];
    const newRowIndex = new Map<string, number>(); // idempotency key → index in commands
    commands.forEach((command, i) => {
      const lastSeq = lastSeqs.get(command.conversationId);
      const senderRole = roles.get(`${command.conversationId}/${command.senderId}`);
      if (lastSeq === undefined || senderRole === undefined) {
        outcomes.push({ error: new NotFoundError("conversation") });
        return;
      }
      const key = keyOf(command);
      const original = stored.get(key);
      if (original) return outcomes.push({ row: original });
      const twin = newRowIndex.get(key);
      if (twin !== undefined) return outcomes.push({ sameAs: twin });
      if (blockedDirect.has(command.conversationId)) return outcomes.push({ error: conversationUnavailable() });
      const encryptionError = encryptionViolation(locked.get(command.conversationId)!, command.content, command.searchTokens ?? []);
      if (encryptionError) return outcomes.push({ error: encryptionError });
      if (command.replyToSeq !== null && command.replyToSeq > lastSeq) {
        return outcomes.push({ error: new InvalidInputError("reply_to_seq", "names no message in this conversation") });
      }
      const mentionError = checkMentions(command, locked.get(command.conversationId)!.type, senderRole, roles);
      if (mentionError) return outcomes.push({ error: mentionError });
      const seq = lastSeq + 1n;
      lastSeqs.set(command.conversationId, seq);
      newRowIndex.set(key, i);
      newRows.push(toNewRow(command, seq));
      outcomes.push({ row: undefined as unknown as MessageRow }); // filled in after the insert
    });
    if (newRows.length === 0) return { outcomes: settle(outcomes), events: [] };

    const touched = new Map([...new Set(newRows.map((r) => r.conversation_id))].map((id) => [id, lastSeqs.get(id)!]));
    const inserted = new Map((await repo.insertMessages(tx, newRows)).map((row) => [`${row.conversation_id}/${row.seq}`, row]));
    // Replies carry a preview of the message they quote, in the response and the event; none
    // when it is past retention. Only batches with replies pay for this query (and its join).
    const replying = [...inserted.values()].filter((row) => row.reply_to_seq !== null);
    const replies = await repo.findMessagesWithReply(tx, replying, this.#retention.at(new Date()));
    for (const row of replies) inserted.set(`${row.conversation_id}/${row.seq}`, row);
    const insertedInOrder = newRows.map((r) => inserted.get(`${r.conversation_id}/${r.seq}`)!);
    await repo.advanceConversations(tx, touched, insertedInOrder);
    await insertBlindTokens(tx, blindTokensOf(commands, newRowIndex, insertedInOrder));
    for (const [i, row] of [...newRowIndex.values()].entries()) outcomes[row] = { row: insertedInOrder[i]! };
    // Last statement of the transaction: it takes the partition head's lock until commit.
    const events = await appendEvents(
      tx,
      this.#log,
      insertedInOrder.map((row) => ({
        conversationId: row.conversation_id,
        actorId: row.sender_id,
        kind: { case: "messageCreated" as const, value: create(MessageCreatedSchema, { message: toMessage(row) }) },
      })),
    );
    return { outcomes: settle(outcomes), events };
  }
}

/**
 * Why the send's mentions are not allowed, or null: only current members can be mentioned,
 * and only group admins may mention everyone.
 */
function checkMentions(command: SendCommand, conversationType: number, senderRole: number, roles: ReadonlyMap<string, number>): Error | null {
  const outsider = (command.mentionUserIds ?? []).findIndex((userId) => !roles.has(`${command.conversationId}/${userId}`));
  if (outsider >= 0) return new InvalidInputError(`mention_user_ids[${outsider}]`, "is not a member of this conversation");
  if (!command.mentionEveryone) return null;
  if (conversationType !== ConversationKind.GROUP) return new InvalidInputError("mention_everyone", "is only for groups");
  if (senderRole !== Role.ADMIN) return new PermissionDeniedError("only group admins can mention everyone", "NOT_ADMIN");
  return null;
}

/** The search tokens of the sends just stored, with the seq and epoch each got. */
function blindTokensOf(commands: readonly SendCommand[], newRowIndex: ReadonlyMap<string, number>, inserted: readonly MessageRow[]): MessageTokens[] {
  return [...newRowIndex.values()].flatMap((commandIndex, i) => {
    const tokens = commands[commandIndex]!.searchTokens ?? [];
    const row = inserted[i]!;
    if (tokens.length === 0) return [];
    return [{ conversationId: row.conversation_id, seq: row.seq, keyEpoch: Number(row.envelope_key_epoch ?? 0), tokens }];
  });
}

/** Gives each send of an identical pair the first one's result. */
function settle(outcomes: Outcome[]): BatchOutcome<MessageRow>[] {
  return outcomes.map((outcome) => {
    const resolved = "sameAs" in outcome ? outcomes[outcome.sameAs]! : outcome;
    return "row" in resolved ? { value: resolved.row } : "error" in resolved ? resolved : { error: new Error("unresolved send") };
  });
}

function keyOf(key: repo.IdempotencyKey): string {
  return JSON.stringify([key.conversationId, key.senderId, key.clientMessageId]);
}

function toNewRow(command: SendCommand, seq: bigint): NewMessageRow {
  return {
    conversation_id: command.conversationId,
    seq: seq.toString(),
    id: newId(),
    sender_id: command.senderId,
    client_message_id: command.clientMessageId,
    reply_to_seq: command.replyToSeq === null ? null : command.replyToSeq.toString(),
    ...contentColumns(command.content),
    mentioned_user_ids: [...(command.mentionUserIds ?? [])],
    mentions_everyone: command.mentionEveryone ?? false,
    story_id: command.story?.storyId ?? null,
    story_author_id: command.story?.authorId ?? null,
  };
}
