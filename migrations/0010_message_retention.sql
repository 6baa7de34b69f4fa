-- Message retention (issue 16): a retention per conversation, set by its admins (either member
-- of a DIRECT conversation), on top of the deployment's MESSAGE_RETENTION_DAYS. Every read
-- filters by the deadline at once; the retention sweeper (src/retention/) deletes what passed it.

-- The conversation's own retention in whole seconds; null when it has none.
ALTER TABLE conversations
  ADD COLUMN message_retention_seconds bigint CHECK (message_retention_seconds >= 60),
  -- Messages (and attachments) created at or before this are past retention for good: set when
  -- the retention changes, to the deadline the old one had, so lengthening or clearing a
  -- retention never brings back what had already passed it. Cleared by the sweeper once
  -- nothing that old is left.
  ADD COLUMN retention_floor timestamptz;

-- The sweeper walks the conversations that have a retention or a floor of their own. Partial, so
-- it stays as small as that set, and on columns sends never write (their updates stay HOT).
CREATE INDEX conversations_with_retention ON conversations (id)
  WHERE message_retention_seconds IS NOT NULL OR retention_floor IS NOT NULL;

-- The deployment's retention finds messages past its deadline across conversations here.
-- Messages are appended in created_at order, so a BRIN index (a few bytes per block range)
-- finds them: a B-tree wrote an entry per send (about 4 % more WAL per message in bench:send) for
-- no benefit to the sweeper, which deletes due messages in any order. Local to each shard
-- when messages are distributed by conversation_id.
CREATE INDEX messages_by_created_at ON messages USING brin (created_at);

-- Encrypted attachments belong to a conversation and go with its retention: found per
-- conversation (its own retention) and by age (the deployment's).
CREATE INDEX media_attachments_by_conversation ON media (conversation_id, created_at) WHERE conversation_id IS NOT NULL;
CREATE INDEX media_attachments_by_age ON media (created_at) WHERE conversation_id IS NOT NULL;
