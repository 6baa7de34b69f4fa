-- The event log (transactional outbox) behind the real-time feed, and message reactions.

-- The log's head: the last position handed out. Positions are taken by bumping this row as
-- the last statement of a transaction, so they are gapless and in commit order: when a
-- position is visible, every lower one is too. One row per log shard (today: shard 0); a
-- sharded deployment gives each shard its own head and cursors become per-shard vectors.
CREATE TABLE event_log_head (
  shard           smallint PRIMARY KEY,
  position        bigint NOT NULL,
  -- Everything up to here is known to be in JetStream (advanced by the relay).
  relayed_through bigint NOT NULL DEFAULT 0
);
INSERT INTO event_log_head (shard, position) VALUES (0, 0);

CREATE TABLE events (
  position        bigint PRIMARY KEY,
  id              uuid NOT NULL,
  -- Routing: the conversation whose members see it, and/or one user who sees it anyway
  -- (e.g. the member who was removed).
  conversation_id uuid,
  target_user_id  text,
  -- A serialized parley.v1.Event without its cursor.
  payload         bytea NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_conversation ON events (conversation_id, position);
CREATE INDEX events_by_target_user ON events (target_user_id, position) WHERE target_user_id IS NOT NULL;

-- One row per (message, emoji, user): the schema makes a repeated reaction count once.
CREATE TABLE message_reactions (
  conversation_id uuid NOT NULL,
  seq             bigint NOT NULL,
  emoji           text NOT NULL,
  user_id         text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, seq, emoji, user_id),
  FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
);

-- Counts kept beside the reactions so reading a message's reactions is O(emojis).
CREATE TABLE message_reaction_counts (
  conversation_id uuid NOT NULL,
  seq             bigint NOT NULL,
  emoji           text NOT NULL,
  count           bigint NOT NULL CHECK (count >= 0),
  PRIMARY KEY (conversation_id, seq, emoji)
);

ALTER TABLE users ADD COLUMN last_seen_at timestamptz;
