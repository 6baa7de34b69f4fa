-- Stories (issue 6): the social graph, media objects, stories with their views and reactions,
-- and a story reference on messages (replies to a story).

-- Who follows whom. Listing either side is a range scan, newest first.
CREATE TABLE follows (
  follower_id text NOT NULL REFERENCES users (id),
  followee_id text NOT NULL REFERENCES users (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (follower_id, followee_id),
  CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_by_follower ON follows (follower_id, created_at DESC, followee_id);
CREATE INDEX follows_by_followee ON follows (followee_id, created_at DESC, follower_id);

-- Each owner's close friends. Seen only by the owner; the friend side is indexed because the
-- story tray asks "who has me as a close friend".
CREATE TABLE close_friends (
  owner_id   text NOT NULL REFERENCES users (id),
  friend_id  text NOT NULL REFERENCES users (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner_id, friend_id),
  CHECK (owner_id <> friend_id)
);
CREATE INDEX close_friends_by_owner ON close_friends (owner_id, created_at DESC, friend_id);
CREATE INDEX close_friends_by_friend ON close_friends (friend_id, owner_id);

-- Blocks. Checked in both directions (a block hides each from the other), hence both indexes.
CREATE TABLE blocks (
  blocker_id text NOT NULL REFERENCES users (id),
  blocked_id text NOT NULL REFERENCES users (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (blocker_id, blocked_id),
  CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_by_blocker ON blocks (blocker_id, created_at DESC, blocked_id);
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
-- The send path asks whether a DIRECT conversation's pair has a block between them.
CREATE INDEX direct_pairs_by_conversation ON direct_pairs (conversation_id);

-- Uploaded images and videos. The bytes live in the blob store under the id.
CREATE TABLE media (
  id           uuid PRIMARY KEY,
  owner_id     text NOT NULL REFERENCES users (id),
  type         smallint NOT NULL, -- parley.v1.MediaType
  content_type text NOT NULL,
  size_bytes   bigint NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Live stories. Rows past expires_at are never returned (every read filters on the clock)
-- and are deleted by the story-expiry consumer or the sweep.
CREATE TABLE stories (
  id         uuid PRIMARY KEY,
  author_id  text NOT NULL REFERENCES users (id),
  -- One story per media object: a retried CreateStory finds the first story by it.
  media_id   uuid NOT NULL UNIQUE REFERENCES media (id),
  caption    text NOT NULL DEFAULT '',
  privacy    smallint NOT NULL CHECK (privacy IN (1, 2, 3)), -- parley.v1.StoryPrivacy
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  -- Distinct viewers other than the author, kept beside story_views so reads are O(1).
  view_count bigint NOT NULL DEFAULT 0 CHECK (view_count >= 0)
);
CREATE INDEX stories_by_author ON stories (author_id, expires_at) INCLUDE (privacy, created_at);
CREATE INDEX stories_by_expiry ON stories (expires_at);
CREATE INDEX stories_public ON stories (expires_at, author_id) WHERE privacy = 1;

-- One row per (story, viewer): the primary key makes a repeated view count once.
CREATE TABLE story_views (
  story_id  uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
  viewer_id text NOT NULL,
  viewed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (story_id, viewer_id)
);
CREATE INDEX story_views_newest ON story_views (story_id, viewed_at DESC, viewer_id);
-- The tray reads one viewer's views of many stories at once: one range scan, hashed.
CREATE INDEX story_views_by_viewer ON story_views (viewer_id, story_id);

-- Story reactions, the same model as message reactions: unique per (story, emoji, user),
-- with counts kept beside them.
CREATE TABLE story_reactions (
  story_id   uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
  emoji      text NOT NULL,
  user_id    text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (story_id, emoji, user_id)
);

CREATE TABLE story_reaction_counts (
  story_id uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
  emoji    text NOT NULL,
  count    bigint NOT NULL CHECK (count >= 0),
  PRIMARY KEY (story_id, emoji)
);

-- A reply to a story points at it; no foreign key, since the story expires and the reply stays.
ALTER TABLE messages ADD COLUMN story_id uuid, ADD COLUMN story_author_id text;
