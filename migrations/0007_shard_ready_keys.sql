-- Keys a sharded deployment needs (Citus-style; README "Scaling out"): a distributed table's
-- primary key and unique constraints must contain its distribution column, and a foreign key
-- between distributed tables must join on it.

-- notifications are distributed by the user they are for.
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
ALTER TABLE notifications ADD PRIMARY KEY (user_id, id);

-- direct_pairs are distributed by user_low (the pair is looked up by its two users), so its
-- reference to a conversation, which lives on the conversation's shard, is kept by the code
-- that creates both in one transaction instead of by a foreign key.
ALTER TABLE direct_pairs DROP CONSTRAINT direct_pairs_conversation_id_fkey;
