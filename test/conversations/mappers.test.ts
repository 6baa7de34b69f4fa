/**
 * The conversation and message mappers build their messages as literals (cheaper than
 * create() on a page of 50). These hold them to what create() made from the same rows: the
 * same message and the same bytes on the wire, whichever optional parts a row has.
 */
import assert from "node:assert/strict";
import { create, equals, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConversationSchema, type ConversationType, type MemberRole } from "../../gen/parley/v1/conversation_pb.ts";
import { MessageDeletionSchema, MessagePreviewSchema, MessageSchema, ReactionSummarySchema, StoryReferenceSchema } from "../../gen/parley/v1/message_pb.ts";
import type { ConversationViewRow } from "../../src/conversations/conversation-repository.ts";
import { toConversation } from "../../src/conversations/conversation-mapper.ts";
import { toContent, toMessage } from "../../src/messages/message-mapper.ts";
import type { MessageWithReplyRow } from "../../src/messages/message-repository.ts";

const AT = new Date("2026-03-04T05:06:07.891Z");
const BEFORE_1970 = new Date(-1_500); // floor, not truncation, for the seconds

function previewByCreate(p: { seq: string; senderId: string; createdAt: Date | null; text: string | null; encrypted: boolean; deleted: boolean }) {
  return create(MessagePreviewSchema, {
    seq: BigInt(p.seq),
    senderId: p.senderId,
    ...(p.createdAt && { createdAt: timestampFromDate(p.createdAt) }),
    content: p.deleted ? { case: "deleted", value: true } : p.encrypted ? { case: "encrypted", value: true } : { case: "text", value: p.text ?? "" },
  });
}

function sameMessage<D extends DescMessage>(schema: D, actual: Message, expected: Message): void {
  assert.ok(equals(schema, actual as never, expected as never), "equal messages");
  assert.deepEqual(Buffer.from(toBinary(schema, actual as never)), Buffer.from(toBinary(schema, expected as never)), "same bytes");
}

const conversationRow: ConversationViewRow = {
  id: "3f1c2a8e-0000-4000-8000-000000000001",
  type: 2,
  name: "group",
  description: "about things",
  created_by: "alice",
  created_at: AT,
  last_activity_at: BEFORE_1970,
  activity_us: "0",
  last_seq: "42",
  member_count: 3,
  encrypted: false,
  blind_search: false,
  key_epoch: 0,
  message_retention_seconds: null,
  effective_retention_seconds: null,
  my_role: 2,
  my_last_read_seq: "40",
  unread_count: "2",
  unread_mention_count: "1",
  direct_peer_id: null,
  lm_seq: "42",
  lm_sender_id: "bob",
  lm_created_at: AT,
  lm_text: "hello",
  lm_encrypted: false,
  lm_deleted: false,
};

function conversationByCreate(row: ConversationViewRow) {
  return create(ConversationSchema, {
    id: row.id,
    type: row.type as ConversationType,
    name: row.name,
    description: row.description,
    createdBy: row.created_by,
    createdAt: timestampFromDate(row.created_at),
    lastActivityAt: timestampFromDate(row.last_activity_at),
    memberCount: row.member_count,
    lastSeq: BigInt(row.last_seq),
    myRole: row.my_role as MemberRole,
    myLastReadSeq: BigInt(row.my_last_read_seq),
    unreadCount: BigInt(row.unread_count),
    directPeerId: row.direct_peer_id ?? "",
    unreadMentionCount: BigInt(row.unread_mention_count),
    encrypted: row.encrypted,
    blindSearch: row.blind_search,
    keyEpoch: row.key_epoch,
    ...(row.message_retention_seconds !== null && { messageRetention: durationFromMs(Number(row.message_retention_seconds) * 1000) }),
    ...(row.effective_retention_seconds !== null && { effectiveMessageRetention: durationFromMs(Number(row.effective_retention_seconds) * 1000) }),
    ...(row.lm_seq !== null && {
      lastMessage: previewByCreate({
        seq: row.lm_seq,
        senderId: row.lm_sender_id ?? "",
        createdAt: row.lm_created_at,
        text: row.lm_text,
        encrypted: row.lm_encrypted ?? false,
        deleted: row.lm_deleted ?? false,
      }),
    }),
  });
}

const messageRow: MessageWithReplyRow = {
  conversation_id: conversationRow.id,
  seq: "7",
  id: "3f1c2a8e-0000-4000-8000-000000000002",
  sender_id: "bob",
  client_message_id: "c-7",
  created_at: AT,
  reply_to_seq: null,
  body_text: "hi",
  envelope_ciphertext: null,
  envelope_nonce: null,
  envelope_algorithm: null,
  envelope_key_id: null,
  envelope_key_epoch: null,
  version: 1,
  edited_at: null,
  deleted_by: null,
  deleted_at: null,
  mentioned_user_ids: [],
  mentions_everyone: false,
  story_id: null,
  story_author_id: null,
  reply_sender_id: null,
  reply_created_at: null,
  reply_text: null,
  reply_encrypted: null,
  reply_deleted: null,
};

function messageByCreate(row: MessageWithReplyRow, reactions: ReturnType<typeof create<typeof ReactionSummarySchema>>[]) {
  return create(MessageSchema, {
    id: row.id,
    conversationId: row.conversation_id,
    seq: BigInt(row.seq),
    senderId: row.sender_id,
    clientMessageId: row.client_message_id,
    createdAt: timestampFromDate(row.created_at),
    ...(row.reply_to_seq !== null && { replyToSeq: BigInt(row.reply_to_seq) }),
    content: toContent(row),
    reactions: row.deleted_at ? [] : reactions,
    version: row.version ?? 1,
    ...(row.edited_at && { editedAt: timestampFromDate(row.edited_at) }),
    ...(row.deleted_at && { deletion: create(MessageDeletionSchema, { deletedBy: row.deleted_by ?? "", deletedAt: timestampFromDate(row.deleted_at) }) }),
    mentionedUserIds: row.mentioned_user_ids ?? [],
    mentionsEveryone: row.mentions_everyone ?? false,
    ...(row.reply_to_seq !== null &&
      row.reply_sender_id && {
        replyTo: previewByCreate({
          seq: row.reply_to_seq,
          senderId: row.reply_sender_id,
          createdAt: row.reply_created_at,
          text: row.reply_text,
          encrypted: row.reply_encrypted ?? false,
          deleted: row.reply_deleted ?? false,
        }),
      }),
    ...(row.story_id !== null && { story: create(StoryReferenceSchema, { storyId: row.story_id, authorId: row.story_author_id ?? "" }) }),
  });
}

describe("conversation and message mappers", () => {
  const conversations: [string, Partial<ConversationViewRow>][] = [
    ["a group with a text preview", {}],
    ["a DIRECT conversation with retentions and an encrypted preview", { type: 1, direct_peer_id: "bob", message_retention_seconds: "3600", effective_retention_seconds: "60", lm_encrypted: true, encrypted: true, key_epoch: 3 }],
    ["a deleted last message", { lm_deleted: true, lm_text: null }],
    ["no last message (empty, or past retention)", { lm_seq: null, lm_sender_id: null, lm_created_at: null, lm_text: null, lm_encrypted: null, lm_deleted: null }],
  ];
  for (const [what, change] of conversations) {
    it(`maps ${what} as create() did`, () => {
      const row = { ...conversationRow, ...change };
      sameMessage(ConversationSchema, toConversation(row), conversationByCreate(row));
    });
  }

  const messages: [string, Partial<MessageWithReplyRow>][] = [
    ["a plain text message", {}],
    ["an edited reply with mentions, a reaction and a story", { reply_to_seq: "3", reply_sender_id: "alice", reply_created_at: BEFORE_1970, reply_text: "q", edited_at: AT, version: 2, mentioned_user_ids: ["alice"], mentions_everyone: true, story_id: "s1", story_author_id: "carol" }],
    ["a tombstone", { body_text: null, deleted_at: AT, deleted_by: "alice" }],
    ["an encrypted message replying to a message past retention", { body_text: null, envelope_ciphertext: new Uint8Array([1, 2]), envelope_nonce: new Uint8Array([3]), envelope_algorithm: "x", envelope_key_id: "k", envelope_key_epoch: "2", reply_to_seq: "1" }],
  ];
  for (const [what, change] of messages) {
    it(`maps ${what} as create() did`, () => {
      const row = { ...messageRow, ...change };
      const reactions = [create(ReactionSummarySchema, { emoji: "👍", count: 2n, reactedByMe: true })];
      sameMessage(MessageSchema, toMessage(row, reactions), messageByCreate(row, reactions));
    });
  }
});
