/** Story rows to protobuf Story messages, as one viewer sees them. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ReactionSummarySchema, type ReactionSummary } from "../../gen/parley/v1/message_pb.ts";
import { StorySchema, type Story, type StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { toMedia } from "../media/index.ts";
import type { StoryReactionRow, StoryWithMedia } from "./story-repository.ts";

export interface ViewerState {
  viewerId: string;
  /** Whether the viewer has viewed it (the author always has). */
  seen: boolean;
  reactions?: ReactionSummary[];
}

export function toStory({ story, media }: StoryWithMedia, viewer: ViewerState): Story {
  const isAuthor = viewer.viewerId === story.author_id;
  return create(StorySchema, {
    id: story.id,
    authorId: story.author_id,
    media: toMedia(media),
    caption: story.caption,
    privacy: story.privacy as StoryPrivacy,
    createdAt: timestampFromDate(story.created_at),
    expiresAt: timestampFromDate(story.expires_at),
    seen: isAuthor || viewer.seen,
    viewCount: isAuthor ? BigInt(story.view_count) : 0n,
    reactions: viewer.reactions ?? [],
  });
}

/** Reaction rows grouped by story, in the repository's order. */
export function toStoryReactions(rows: readonly StoryReactionRow[]): Map<string, ReactionSummary[]> {
  const byStory = new Map<string, ReactionSummary[]>();
  for (const row of rows) {
    let list = byStory.get(row.story_id);
    if (!list) byStory.set(row.story_id, (list = []));
    list.push(create(ReactionSummarySchema, { emoji: row.emoji, count: BigInt(row.count), reactedByMe: row.reacted_by_me }));
  }
  return byStory;
}
