/**
 * What the analytics consumer takes from one event of the log. Most events (reads, edits,
 * membership, notifications…) change no figure; a scrubbed or unrouted event (retention,
 * erasure) has no kind left and changes none either.
 */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { StoredEvent } from "../log/event-log.ts";

/** A message was sent: one more message, and its sender is active, in its created_at buckets. */
export interface MessageSent {
  kind: "message";
  conversationId: string;
  createdAt: Date;
  senderId: string;
}

/** A reaction appeared or went (by its user, or with its message when that was deleted). */
export interface ReactionChange {
  kind: "reactionAdded" | "reactionRemoved";
  conversationId: string;
  seq: bigint;
  emoji: string;
  userId: string;
}

/** A message was deleted: its reactions were erased with it (no reaction_removed events). */
export interface MessageDeleted {
  kind: "messageDeleted";
  conversationId: string;
  seq: bigint;
}

/**
 * A story figure of its author: the story posted (postedAt known from the event), or one
 * more first view or a reaction added or taken back (bucketed by the story's posting time,
 * looked up by storyId).
 */
export interface StoryFigure {
  kind: "story";
  authorId: string;
  storyId: string;
  postedAt: Date | null;
  posted: number;
  views: number;
  reactions: number;
  viewerId: string | null;
}

export type AnalyticsChange = MessageSent | ReactionChange | MessageDeleted | StoryFigure;

/** The change the event makes to the figures, or null when it makes none. */
export function analyticsChangeOf(stored: StoredEvent): AnalyticsChange | null {
  const { conversationId, targetUserId } = stored;
  const { kind } = stored.event;
  switch (kind.case) {
    case "messageCreated": {
      const message = kind.value.message;
      if (conversationId === null || !message?.createdAt) return null;
      return { kind: "message", conversationId, createdAt: timestampDate(message.createdAt), senderId: message.senderId };
    }
    case "reactionAdded":
    case "reactionRemoved":
      if (conversationId === null) return null;
      return { kind: kind.case, conversationId, seq: kind.value.messageSeq, emoji: kind.value.emoji, userId: kind.value.userId };
    case "messageDeleted":
      return conversationId === null ? null : { kind: "messageDeleted", conversationId, seq: kind.value.messageSeq };
    case "storyPosted": {
      // One copy goes to the author and one to each member of the audience: count the author's.
      const story = kind.value.story;
      if (!story?.createdAt || targetUserId === null || targetUserId !== story.authorId) return null;
      return { kind: "story", authorId: story.authorId, storyId: story.id, postedAt: timestampDate(story.createdAt), posted: 1, views: 0, reactions: 0, viewerId: null };
    }
    case "storyViewed":
      // Recorded for the author alone, and only for a viewer's first view.
      if (targetUserId === null) return null;
      return { kind: "story", authorId: targetUserId, storyId: kind.value.storyId, postedAt: null, posted: 0, views: 1, reactions: 0, viewerId: kind.value.viewerId };
    case "storyReacted":
      if (targetUserId === null) return null;
      return { kind: "story", authorId: targetUserId, storyId: kind.value.storyId, postedAt: null, posted: 0, views: 0, reactions: kind.value.added ? 1 : -1, viewerId: null };
    default:
      return null;
  }
}
