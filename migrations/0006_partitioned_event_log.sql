-- The event log in partitions. One global head row serialised every writing transaction in
-- the cluster and could not be sharded; now each partition has its own head and its own
-- gapless, commit-ordered positions. A conversation's events go to the partition of its id, a
-- user's own events to the partition of the user id (src/log/partitions.ts).
--
-- The partition count is the deployment's EVENT_PARTITIONS, fixed when the first node starts
-- (it writes event_log and the head rows); see `npm run event-partitions` to change it.
--
-- Events of the single-position log are dropped: their positions mean nothing in partitions.
-- Nodes of the previous release publish every event right after commit and their relay fills
-- what is missing, so after a clean stop nothing is left unpublished. Clients holding a cursor
-- of that release are told to resync once.

DROP TABLE event_log_head;
DELETE FROM events;

-- The deployment's log: its id (cursors carry it, so one from another deployment is refused)
-- and its partition count.
CREATE TABLE event_log (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  log_id     text NOT NULL,
  partitions integer NOT NULL CHECK (partitions BETWEEN 1 AND 1024)
);

-- One head per partition: the last position handed out there, taken by bumping this row as the
-- last statement of a transaction (so positions are gapless and in commit order per partition).
CREATE TABLE event_log_partitions (
  partition smallint PRIMARY KEY,
  position  bigint NOT NULL DEFAULT 0
);

-- The outbox relay's checkpoint per partition: everything up to it is known to be in
-- JetStream. A table of its own so that the relay never locks a head row that writers hold.
CREATE TABLE event_relay_checkpoints (
  partition       smallint PRIMARY KEY,
  relayed_through bigint NOT NULL DEFAULT 0
);

ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD COLUMN partition smallint NOT NULL;
ALTER TABLE events ADD PRIMARY KEY (partition, position);
-- A user's own events across partitions (replay of membership changes, notifications).
DROP INDEX events_by_target_user;
CREATE INDEX events_by_target_user ON events (target_user_id, partition, position) WHERE target_user_id IS NOT NULL;
