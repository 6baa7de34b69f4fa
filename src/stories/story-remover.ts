/**
 * Deletes stories completely: media bytes, then (in one transaction) the story rows with their
 * views and reactions, the media rows and a story_expired event to everyone who may have seen
 * them. Used by DeleteStory, the expiry consumer and the sweep, so all three clean up the
 * same way. Idempotent: a story already gone is skipped.
 */
import type { Kysely, Transaction } from "kysely";
import type { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { Database } from "../db/schema.ts";
import { writeWithEvents, type EventPublisher, type NewEvent } from "../log/index.ts";
import { deleteMedia, type BlobStore } from "../media/index.ts";
import { storyExpired, audienceOf } from "./story-events.ts";
import { deleteStories, type DoomedStory } from "./story-repository.ts";

export interface StoryRemoverOptions {
  db: Kysely<Database>;
  blobs: BlobStore;
  publisher: EventPublisher;
}

export class StoryRemover {
  readonly #options: StoryRemoverOptions;

  constructor(options: StoryRemoverOptions) {
    this.#options = options;
  }

  /**
   * Removes the stories; `deletedBy` is the author for DeleteStory and null for expiry.
   * Bytes go first: if the transaction then fails the rows remain and the next attempt
   * (a redelivery, the sweep) finishes, whereas rows first could strand files forever.
   */
  async remove(stories: readonly DoomedStory[], deletedBy: string | null): Promise<void> {
    if (stories.length === 0) return;
    const { db, publisher } = this.#options;
    await this.deleteBytes(stories);
    await writeWithEvents(db, publisher, (tx, recorded) => removeStoryRows(tx, recorded, stories, deletedBy));
  }

  /** The first half of a removal, for a caller that removes the rows in a transaction of its own. */
  async deleteBytes(stories: readonly DoomedStory[]): Promise<void> {
    await Promise.all(stories.map((s) => this.#options.blobs.delete(s.media_id)));
  }
}

/**
 * The second half, inside the caller's transaction: the rows of the stories that still exist,
 * their media rows, and a story_expired event to everyone who may have seen each.
 */
export async function removeStoryRows(tx: Transaction<Database>, recorded: NewEvent[], stories: readonly DoomedStory[], deletedBy: string | null): Promise<void> {
  const gone = new Set(await deleteStories(tx, stories.map((s) => s.id)));
  const removed = stories.filter((s) => gone.has(s.id));
  await deleteMedia(tx, removed.map((s) => s.media_id));
  for (const story of removed) {
    const audience = await audienceOf(tx, story.author_id, story.privacy as StoryPrivacy);
    recorded.push(...storyExpired(story.id, story.author_id, audience, deletedBy ?? story.author_id, deletedBy !== null));
  }
}
