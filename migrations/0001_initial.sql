-- Users, conversations, members and messages.
-- Every hot query is scoped by conversation_id, so these tables can later be distributed
-- by it (Citus-style) without rewrites; direct_pairs is keyed by user so it can be
-- distributed separately.

CREATE TABLE users (
  id              text PRIMARY KEY,
  display_name    text NOT NULL DEFAULT '',
  avatar_media_id text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversations (
  id               uuid PRIMARY KEY,
  type             smallint NOT NULL CHECK (type IN (1, 2)), -- 1 DIRECT, 2 GROUP
  name             text NOT NULL DEFAULT '',
  description      text NOT NULL DEFAULT '',
  created_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  last_activity_at timestamptz NOT NULL DEFAULT now(),
  -- The seq of the newest message. Bumped inside the send's transaction, which makes
  -- seq gapless and ordered by commit.
  last_seq         bigint NOT NULL DEFAULT 0,
  member_count     integer NOT NULL DEFAULT 0
);

-- One row per unordered pair of users with a DIRECT conversation (user_low < user_high).
CREATE TABLE direct_pairs (
  user_low        text NOT NULL,
  user_high       text NOT NULL,
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  PRIMARY KEY (user_low, user_high),
  CHECK (user_low < user_high)
);

CREATE TABLE conversation_members (
  conversation_id uuid NOT NULL REFERENCES conversations (id),
  user_id         text NOT NULL REFERENCES users (id),
  role            smallint NOT NULL CHECK (role IN (1, 2)), -- 1 MEMBER, 2 ADMIN
  joined_at       timestamptz NOT NULL DEFAULT now(),
  last_read_seq   bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id);

CREATE TABLE messages (
  conversation_id    uuid NOT NULL REFERENCES conversations (id),
  seq                bigint NOT NULL,
  id                 uuid NOT NULL,
  sender_id          text NOT NULL,
  client_message_id  text NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  reply_to_seq       bigint,
  body_text          text,
  -- An end-to-end encrypted body, stored exactly as the client sent it.
  envelope_ciphertext bytea,
  envelope_nonce      bytea,
  envelope_algorithm  text,
  envelope_key_id     text,
  envelope_key_epoch  bigint, -- a uint32 on the wire
  PRIMARY KEY (conversation_id, seq),
  CHECK (body_text IS NULL OR envelope_ciphertext IS NULL)
);
-- Idempotent sends: a retry with the same client_message_id finds the first message.
CREATE UNIQUE INDEX messages_idempotency ON messages (conversation_id, sender_id, client_message_id);
