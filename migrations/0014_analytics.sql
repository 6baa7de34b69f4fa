-- Usage rollups, by hour and by day (UTC), filled by the "analytics" consumer from the event log
-- and recomputable from the raw tables (RebuildAnalytics, `npm run analytics:rebuild`).
-- granularity is 'hour' or 'day': the unit date_trunc takes, so the consumer and the rebuild
-- bucket with the same expression. Every figure is defined so that it equals a count over the
-- raw tables (see src/analytics/analytics-repository.ts).

-- How far the consumer has applied each partition of the event log. Updated in the same
-- transaction as the figures, so a redelivered or republished event (position at or below it)
-- is never counted twice. log_id is the event log they belong to: a new log (`npm run
-- event-partitions`) starts its positions over, so watermarks of another log are reset.
CREATE TABLE analytics_watermarks (
  partition smallint PRIMARY KEY,
  position  bigint NOT NULL,
  log_id    text NOT NULL
);

-- Per conversation and bucket: messages sent (created_at in the bucket, tombstones included),
-- distinct senders among them, and reactions added in the bucket that are still there.
CREATE TABLE analytics_conversation_buckets (
  conversation_id uuid NOT NULL,
  granularity     text NOT NULL CHECK (granularity IN ('hour', 'day')),
  bucket          timestamptz NOT NULL,
  messages        bigint NOT NULL DEFAULT 0,
  active_members  bigint NOT NULL DEFAULT 0,
  reactions       bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, granularity, bucket)
);
-- Deployment figures sum every conversation of a bucket.
CREATE INDEX analytics_conversation_buckets_by_time ON analytics_conversation_buckets (granularity, bucket);

-- Who sent in a conversation's bucket: a sender is counted as active once per bucket.
CREATE TABLE analytics_conversation_senders (
  conversation_id uuid NOT NULL,
  granularity     text NOT NULL,
  bucket          timestamptz NOT NULL,
  user_id         text NOT NULL,
  PRIMARY KEY (conversation_id, granularity, bucket, user_id)
);
-- Deployment active users: distinct senders of a bucket across conversations.
CREATE INDEX analytics_conversation_senders_by_time ON analytics_conversation_senders (granularity, bucket, user_id);

-- The reactions counted, with when each was added: a removal (or the message's deletion,
-- which erases its reactions) takes one back from the bucket it was counted in.
CREATE TABLE analytics_reaction_marks (
  conversation_id uuid NOT NULL,
  seq             bigint NOT NULL,
  emoji           text NOT NULL,
  user_id         text NOT NULL,
  reacted_at      timestamptz NOT NULL,
  PRIMARY KEY (conversation_id, seq, emoji, user_id)
);

-- Per story author and bucket of posting: stories posted, their first views by a viewer, the
-- distinct viewers of those stories, and the reactions on them still there.
CREATE TABLE analytics_author_buckets (
  author_id      text NOT NULL,
  granularity    text NOT NULL CHECK (granularity IN ('hour', 'day')),
  bucket         timestamptz NOT NULL,
  stories_posted bigint NOT NULL DEFAULT 0,
  views          bigint NOT NULL DEFAULT 0,
  reach          bigint NOT NULL DEFAULT 0,
  reactions      bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (author_id, granularity, bucket)
);
CREATE INDEX analytics_author_buckets_by_time ON analytics_author_buckets (granularity, bucket);

-- Who viewed an author's stories of a bucket: a viewer reaches the author once per bucket.
CREATE TABLE analytics_story_viewers (
  author_id   text NOT NULL,
  granularity text NOT NULL,
  bucket      timestamptz NOT NULL,
  viewer_id   text NOT NULL,
  PRIMARY KEY (author_id, granularity, bucket, viewer_id)
);
