/**
 * Loads a story for a viewer, applying the privacy rule: the single gate every story path
 * (and media downloads) goes through. A story the viewer may not see is NOT_FOUND.
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { NotFoundError } from "../errors.ts";
import type { MediaRow } from "../media/index.ts";
import { canSee, relationOf, type Relation } from "./story-privacy.ts";
import { findLiveStory, findRelations, findStoryByMedia, type StoryWithMedia } from "./story-repository.ts";

export class StoryAccess {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** The viewer's relation to an author. */
  async relation(viewerId: string, authorId: string): Promise<Relation> {
    if (viewerId === authorId) return "author";
    const flags = await findRelations(this.#db, viewerId, [authorId]);
    return relationOf(flags.get(authorId)!);
  }

  /** The story, when the viewer may see it now; otherwise NOT_FOUND. */
  async requireVisible(viewerId: string, storyId: string, now: Date): Promise<StoryWithMedia> {
    const found = await findLiveStory(this.#db, storyId, now);
    if (!found) throw new NotFoundError("story");
    const { privacy, author_id, expires_at } = found.story;
    if (!canSee({ privacy, expiresAt: expires_at }, await this.relation(viewerId, author_id), now)) throw new NotFoundError("story");
    return found;
  }

  /**
   * Who may read a media object: while a story shows it, whoever may see that story (its
   * author included, until the deadline); media not (yet) in a story, only its owner.
   */
  readonly mayReadMedia = async (viewerId: string, media: MediaRow, now: Date): Promise<boolean> => {
    const story = await findStoryByMedia(this.#db, media.id);
    if (!story) return viewerId === media.owner_id;
    return canSee({ privacy: story.privacy, expiresAt: story.expires_at }, await this.relation(viewerId, story.author_id), now);
  };
}
