/**
 * The feed events stories record, and to whom. Each event is a row addressed to one user
 * (target_user_id), which is what the feed already delivers and replays. A new story costs one
 * row per follower or close friend who may see it: fan-out on write, bounded by the author's
 * audience, and the tray (ListStoryFeed) stays the source of truth for clients that missed it.
 */
import { create } from "@bufbuild/protobuf";
import { StoryExpiredSchema, StoryPostedSchema, StoryReactedSchema, StoryViewedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { Story, StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import type { NewEvent } from "../log/index.ts";
import { findAudienceCandidates } from "./story-repository.ts";
import { relationOf, visibleTiers } from "./story-privacy.ts";

/** Everyone but the author who may see a story of this tier now, by the privacy rule. */
export async function audienceOf(tx: Transaction<Database>, authorId: string, privacy: StoryPrivacy): Promise<string[]> {
  const candidates = await findAudienceCandidates(tx, authorId);
  return [...candidates].filter(([, flags]) => visibleTiers(relationOf(flags)).includes(privacy)).map(([userId]) => userId);
}

function toUser(userId: string, actorId: string, kind: NewEvent["kind"]): NewEvent {
  return { conversationId: null, targetUserId: userId, actorId, kind };
}

/** The author's copy shows it as seen, like every read does for them. */
export function storyPosted(story: Story, audience: readonly string[]): NewEvent[] {
  const authorCopy = create(StoryPostedSchema, { story: { ...story, seen: true } });
  const audienceCopy = create(StoryPostedSchema, { story: { ...story, seen: false, viewCount: 0n } });
  return [
    toUser(story.authorId, story.authorId, { case: "storyPosted", value: authorCopy }),
    ...audience.map((userId) => toUser(userId, story.authorId, { case: "storyPosted", value: audienceCopy })),
  ];
}

export function storyViewed(storyId: string, authorId: string, viewerId: string, viewCount: bigint): NewEvent {
  return toUser(authorId, viewerId, { case: "storyViewed", value: create(StoryViewedSchema, { storyId, viewerId, viewCount }) });
}

export function storyReacted(storyId: string, authorId: string, userId: string, emoji: string, added: boolean, count: bigint): NewEvent {
  return toUser(authorId, userId, { case: "storyReacted", value: create(StoryReactedSchema, { storyId, emoji, userId, added, count }) });
}

/** To the author and everyone who may (still) see the story: drop it. */
export function storyExpired(storyId: string, authorId: string, audience: readonly string[], actorId: string, deleted: boolean): NewEvent[] {
  const value = create(StoryExpiredSchema, { storyId, authorId, deleted });
  return [authorId, ...audience].map((userId) => toUser(userId, actorId, { case: "storyExpired", value }));
}
