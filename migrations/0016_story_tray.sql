-- The story tray (issue 21): one summary row per (author, privacy tier) that has stories, and
-- one per (viewer, author, tier) counting the viewer's views of them, so ListStoryFeed sorts
-- the followed authors by reading a few rows per author instead of every story.
--
-- Both are kept in the transactions that change what they summarize (story-repository.ts):
-- CreateStory adds to story_tray, a first MarkStoryViewed adds to story_tray_views, and every
-- deletion (DeleteStory, expiry, the sweep, moderation, account erasure: all go through
-- deleteStories) takes its stories out of both. Rows count stories that exist, live or past
-- their deadline but not yet deleted; reads still filter on the clock: a tier whose
-- first_expires_at has passed is recomputed from its stories (see listTrayAuthors).

CREATE TABLE story_tray (
  author_id        text NOT NULL,
  privacy          smallint NOT NULL CHECK (privacy IN (1, 2, 3)), -- parley.v1.StoryPrivacy
  story_count      integer NOT NULL CHECK (story_count > 0),
  newest_at        timestamptz NOT NULL, -- max(created_at)
  first_expires_at timestamptz NOT NULL, -- min(expires_at): until then every counted story is live
  last_expires_at  timestamptz NOT NULL, -- max(expires_at): from then on none is
  PRIMARY KEY (author_id, privacy)
);
-- include_public: every author with a live PUBLIC story.
CREATE INDEX story_tray_public ON story_tray (last_expires_at, author_id) WHERE privacy = 1;

-- How many of the (author, tier)'s existing stories the viewer has viewed; unseen ⇔ fewer than
-- story_count. No row means none; a count that deletions brought to 0 stays until the story
-- sweep drops it (found through the small partial index).
CREATE TABLE story_tray_views (
  viewer_id    text NOT NULL,
  author_id    text NOT NULL,
  privacy      smallint NOT NULL,
  viewed_count integer NOT NULL CHECK (viewed_count >= 0),
  PRIMARY KEY (viewer_id, author_id, privacy)
);
CREATE INDEX story_tray_views_zero ON story_tray_views (viewer_id) WHERE viewed_count = 0;

-- Backfill from the stories and views there are.
INSERT INTO story_tray (author_id, privacy, story_count, newest_at, first_expires_at, last_expires_at)
SELECT author_id, privacy, count(*), max(created_at), min(expires_at), max(expires_at)
FROM stories GROUP BY author_id, privacy;

INSERT INTO story_tray_views (viewer_id, author_id, privacy, viewed_count)
SELECT v.viewer_id, s.author_id, s.privacy, count(*)
FROM story_views v JOIN stories s ON s.id = v.story_id
GROUP BY v.viewer_id, s.author_id, s.privacy;
