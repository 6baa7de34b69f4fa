/** Rollup rows → protobuf buckets. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConversationBucketSchema, DeploymentBucketSchema, StoryBucketSchema, type ConversationBucket, type DeploymentBucket, type StoryBucket } from "../../gen/parley/v1/analytics_service_pb.ts";
import type { AuthorBucketRow, ConversationBucketRow, DeploymentBucketRow } from "./analytics-repository.ts";

export function toConversationBucket(row: ConversationBucketRow): ConversationBucket {
  return create(ConversationBucketSchema, {
    start: timestampFromDate(row.bucket),
    messages: BigInt(row.messages),
    activeMembers: BigInt(row.active_members),
    reactions: BigInt(row.reactions),
  });
}

export function toStoryBucket(row: AuthorBucketRow): StoryBucket {
  return create(StoryBucketSchema, {
    start: timestampFromDate(row.bucket),
    storiesPosted: BigInt(row.stories_posted),
    views: BigInt(row.views),
    reach: BigInt(row.reach),
    reactions: BigInt(row.reactions),
  });
}

export function toDeploymentBucket(row: DeploymentBucketRow): DeploymentBucket {
  return create(DeploymentBucketSchema, {
    start: timestampFromDate(row.bucket),
    messages: BigInt(row.messages),
    activeUsers: BigInt(row.active_users),
    reactions: BigInt(row.reactions),
    storiesPosted: BigInt(row.stories_posted),
    storyViews: BigInt(row.story_views),
  });
}
