/**
 * Who may see a story: the one rule every story path uses (get, tray, user list, view,
 * viewers, react, reply, media download). Pure, so it is tested exhaustively on its own.
 *
 * The caller's relation to the author is the strongest that holds, blocks winning over
 * everything. Tiers nest: whoever may see CLOSE_FRIENDS stories may see FOLLOWERS and PUBLIC
 * ones too. The rule is evaluated at read time against the current graph, so unfollowing or
 * leaving a close-friends list takes effect at once, also for stories already posted.
 */
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";

export type Relation = "author" | "close_friend" | "follower" | "stranger" | "blocked";

/** What holds between a viewer and an author, as stored. */
export interface RelationFlags {
  /** The viewer is the author. */
  isAuthor: boolean;
  /** Either of them blocked the other. */
  blocked: boolean;
  /** The viewer is on the author's close-friends list. */
  closeFriend: boolean;
  /** The viewer follows the author. */
  follower: boolean;
}

export function relationOf(flags: RelationFlags): Relation {
  if (flags.isAuthor) return "author";
  if (flags.blocked) return "blocked";
  if (flags.closeFriend) return "close_friend";
  if (flags.follower) return "follower";
  return "stranger";
}

const ALL = [StoryPrivacy.PUBLIC, StoryPrivacy.FOLLOWERS, StoryPrivacy.CLOSE_FRIENDS] as const;

/** Whether the value names a tier a story can be posted with. */
export function isTier(value: number): value is StoryPrivacy {
  return (ALL as readonly number[]).includes(value);
}

const VISIBLE_TIERS: Readonly<Record<Relation, readonly StoryPrivacy[]>> = {
  author: ALL,
  close_friend: ALL,
  follower: [StoryPrivacy.PUBLIC, StoryPrivacy.FOLLOWERS],
  stranger: [StoryPrivacy.PUBLIC],
  blocked: [],
};

/** The privacy tiers whose stories a viewer in this relation may see (queries filter on them). */
export function visibleTiers(relation: Relation): readonly StoryPrivacy[] {
  return VISIBLE_TIERS[relation];
}

/** A story as far as visibility goes. */
export interface StoryVisibility {
  /** A StoryPrivacy value (stored as a number). */
  privacy: number;
  expiresAt: Date;
}

/** Whether the viewer may see the story now; an expired story is seen by no one, the author included. */
export function canSee(story: StoryVisibility, relation: Relation, now: Date): boolean {
  return story.expiresAt.getTime() > now.getTime() && (VISIBLE_TIERS[relation] as readonly number[]).includes(story.privacy);
}
