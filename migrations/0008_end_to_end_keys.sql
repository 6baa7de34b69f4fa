-- End-to-end encryption: encrypted conversations with key epochs, the key directory
-- (devices and one-time prekeys), per-device inboxes and blind-index search tokens.
-- The server holds public keys and ciphertext only.

-- Encrypted is fixed at creation. key_epoch is 0 for plain conversations and starts at 1 for
-- encrypted ones; it moves on when a member leaves or is removed or revokes a device, and
-- encrypted sends must carry the current one (so nothing sent after a removal can use a key
-- the removed member had).
ALTER TABLE conversations
  ADD COLUMN encrypted    boolean NOT NULL DEFAULT false,
  ADD COLUMN blind_search boolean NOT NULL DEFAULT false,
  ADD COLUMN key_epoch    integer NOT NULL DEFAULT 0,
  ADD CONSTRAINT conversations_blind_search_needs_encryption CHECK (encrypted OR NOT blind_search);

-- A pair may have one plain and one encrypted DIRECT conversation.
ALTER TABLE direct_pairs ADD COLUMN encrypted boolean NOT NULL DEFAULT false;
ALTER TABLE direct_pairs DROP CONSTRAINT direct_pairs_pkey;
ALTER TABLE direct_pairs ADD PRIMARY KEY (user_low, user_high, encrypted);

-- Distributed by user_id in a sharded deployment (device lookups are by user).
CREATE TABLE devices (
  user_id            text NOT NULL,
  id                 uuid NOT NULL,
  signing_public_key bytea NOT NULL CHECK (length(signing_public_key) = 32),
  box_public_key     bytea NOT NULL CHECK (length(box_public_key) = 32),
  box_key_signature  bytea NOT NULL CHECK (length(box_key_signature) = 64),
  display_name       text NOT NULL DEFAULT '',
  created_at         timestamptz NOT NULL DEFAULT now(),
  revoked_at         timestamptz,
  PRIMARY KEY (user_id, id)
);
CREATE UNIQUE INDEX devices_by_id ON devices (id);
-- A signing key names one device for good, revoked or not.
CREATE UNIQUE INDEX devices_by_signing_key ON devices (signing_public_key);

-- Claimed prekeys stay (claimed_at set) so that a key id or key is never handed out twice.
CREATE TABLE device_prekeys (
  device_id  uuid NOT NULL,
  key_id     bigint NOT NULL,
  public_key bytea NOT NULL CHECK (length(public_key) = 32),
  signature  bytea NOT NULL CHECK (length(signature) = 64),
  claimed_at timestamptz,
  PRIMARY KEY (device_id, key_id)
);
CREATE UNIQUE INDEX device_prekeys_by_key ON device_prekeys (device_id, public_key);
CREATE INDEX device_prekeys_unclaimed ON device_prekeys (device_id, key_id) WHERE claimed_at IS NULL;

-- A device's inbox, kept until the device acknowledges (deletes) each message.
CREATE TABLE to_device_messages (
  recipient_device_id uuid NOT NULL,
  n                   bigint GENERATED ALWAYS AS IDENTITY,
  id                  uuid NOT NULL,
  recipient_user_id   text NOT NULL,
  sender_user_id      text NOT NULL,
  sender_device_id    uuid NOT NULL,
  ciphertext          bytea NOT NULL,
  nonce               bytea NOT NULL,
  algorithm           text NOT NULL,
  prekey_id           bigint NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (recipient_device_id, n)
);
CREATE UNIQUE INDEX to_device_messages_by_id ON to_device_messages (recipient_device_id, id);

-- Attachments sealed on the client for an encrypted conversation: readable by its members.
ALTER TABLE media ADD COLUMN conversation_id uuid,
  ADD CONSTRAINT media_attachments_are_encrypted CHECK ((type = 7) = (conversation_id IS NOT NULL)); -- 7: MEDIA_TYPE_ENCRYPTED

-- Blind-index tokens of encrypted messages in conversations with blind search. Queries are
-- always within one conversation and key epoch, so the table shards with the conversation.
CREATE TABLE message_blind_tokens (
  conversation_id uuid NOT NULL,
  key_epoch       integer NOT NULL,
  token           bytea NOT NULL,
  seq             bigint NOT NULL,
  PRIMARY KEY (conversation_id, key_epoch, token, seq)
);
CREATE INDEX message_blind_tokens_by_message ON message_blind_tokens (conversation_id, seq);
