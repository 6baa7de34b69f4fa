-- Account erasure (UserService.DeleteAccount): a record of each erasure, which is what makes it
-- resumable (a node that dies mid-way leaves it unfinished; another node's sweep or the next
-- start finishes it) and what every node's write gate reads. The row stays once finished, as
-- the record that the account with this id was erased and when; it holds no content.
CREATE TABLE account_erasures (
  user_id         text PRIMARY KEY,
  requested_at    timestamptz NOT NULL DEFAULT now(),
  -- The run working on it (a random token) and when it last made progress; a run whose
  -- heartbeat is older than the lease died, and the sweep takes the erasure over.
  runner          text,
  heartbeat_at    timestamptz,
  finished_at     timestamptz,
  -- Messages turned into tombstones so far (the response's messages_erased).
  messages_erased bigint NOT NULL DEFAULT 0
);
-- The write gate polls "unfinished, or finished since I last looked": one index range each.
CREATE INDEX account_erasures_by_finish ON account_erasures (finished_at);

-- Finding what one user wrote or owns, a batch at a time. Messages: only those not yet
-- tombstones, so an erasure resumes where it stopped by asking for the next batch.
CREATE INDEX messages_live_by_sender ON messages (sender_id, conversation_id, seq) WHERE deleted_at IS NULL;
CREATE INDEX message_reactions_by_user ON message_reactions (user_id, conversation_id, seq);
CREATE INDEX story_reactions_by_user ON story_reactions (user_id);
CREATE INDEX media_by_owner ON media (owner_id);
