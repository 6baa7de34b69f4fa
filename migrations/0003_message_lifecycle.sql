-- The message lifecycle: edits with history, deletes as tombstones, moderation log,
-- mentions, exact unread counters, notifications and their settings.

-- Edits bump version; deletes erase the content and leave who/when. Mentions live outside the
-- content, so they work (and unread-mention counts stay right) for encrypted messages too.
ALTER TABLE messages
  ADD COLUMN version            integer NOT NULL DEFAULT 1,
  ADD COLUMN edited_at          timestamptz,
  ADD COLUMN deleted_by         text,
  ADD COLUMN deleted_at         timestamptz,
  ADD COLUMN mentioned_user_ids text[] NOT NULL DEFAULT '{}',
  ADD COLUMN mentions_everyone  boolean NOT NULL DEFAULT false;

-- Earlier versions of edited messages (the current one is in messages). Erased on delete.
CREATE TABLE message_edits (
  conversation_id     uuid NOT NULL,
  seq                 bigint NOT NULL,
  version             integer NOT NULL,
  body_text           text,
  envelope_ciphertext bytea,
  envelope_nonce      bytea,
  envelope_algorithm  text,
  envelope_key_id     text,
  envelope_key_epoch  bigint,
  -- When this version was written, and when the next edit replaced it.
  created_at          timestamptz NOT NULL,
  replaced_at         timestamptz NOT NULL,
  PRIMARY KEY (conversation_id, seq, version),
  FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
);

-- Group admins deleting other members' messages. Holds no content.
CREATE TABLE moderation_log (
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  message_seq     bigint NOT NULL,
  message_id      uuid NOT NULL,
  sender_id       text NOT NULL,
  deleted_by      text NOT NULL,
  deleted_at      timestamptz NOT NULL,
  PRIMARY KEY (conversation_id, message_seq)
);
CREATE INDEX moderation_log_newest_first ON moderation_log (conversation_id, deleted_at DESC, message_seq DESC);

-- Exact unread counters, maintained by every write that changes them (sends, deletes, reads,
-- joins), so ListConversations reads them in O(1) per conversation. read_at: read receipts.
ALTER TABLE conversation_members
  ADD COLUMN unread_count         bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
  ADD COLUMN unread_mention_count bigint NOT NULL DEFAULT 0 CHECK (unread_mention_count >= 0),
  ADD COLUMN read_at              timestamptz;

-- Counters for rows that existed before this migration (after it, members start at zero).
UPDATE conversation_members m SET
  unread_count = (SELECT count(*) FROM messages x
    WHERE x.conversation_id = m.conversation_id AND x.seq > m.last_read_seq AND x.sender_id <> m.user_id);

-- Which message an event's payload carries (message_created, message_edited) and which one it
-- quotes as a reply preview, so deleting a message can erase its text from those payloads.
ALTER TABLE events ADD COLUMN message_seq bigint, ADD COLUMN reply_to_seq bigint;
CREATE INDEX events_by_message ON events (conversation_id, message_seq) WHERE message_seq IS NOT NULL;
CREATE INDEX events_by_quoted_message ON events (conversation_id, reply_to_seq) WHERE reply_to_seq IS NOT NULL;

-- One row per (user, source event): the notifier's idempotency key.
CREATE TABLE notifications (
  id              uuid PRIMARY KEY,
  user_id         text NOT NULL,
  source_event_id uuid NOT NULL,
  kind            smallint NOT NULL CHECK (kind IN (1, 2, 3)), -- 1 MENTION, 2 REPLY, 3 ADDED
  conversation_id uuid NOT NULL,
  actor_id        text NOT NULL,
  message_seq     bigint NOT NULL DEFAULT 0,
  via_everyone    boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  read_at         timestamptz,
  -- Whether it goes to the push outbox (settings allowed it and it was not muted), and when it
  -- was known to be there.
  push            boolean NOT NULL,
  pushed_at       timestamptz,
  UNIQUE (user_id, source_event_id)
);
CREATE INDEX notifications_newest_first ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
CREATE INDEX notifications_to_push ON notifications (source_event_id) WHERE push AND pushed_at IS NULL;

CREATE TABLE notification_settings (
  user_id         text NOT NULL,
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  level           smallint NOT NULL CHECK (level IN (1, 2, 3)), -- 1 ALL, 2 MENTIONS_ONLY, 3 NONE
  muted_until     timestamptz,
  PRIMARY KEY (user_id, conversation_id)
);
