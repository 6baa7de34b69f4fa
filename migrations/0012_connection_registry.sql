-- The connection registry: every live Subscribe stream, and the nodes serving them.
-- Small (one row per open stream, one per node) and read across users: in a sharded
-- deployment both tables stay on the coordinator (Citus: local tables), never distributed.
--
-- A node writes its streams in batches and confirms it is alive by moving heartbeat_at
-- (the database's clock, so nodes' clocks never matter). Reads count only nodes whose
-- heartbeat is within the TTL, so a killed node's streams vanish from every listing by then;
-- a periodic sweep deletes its rows afterwards.
CREATE TABLE connection_nodes (
  node_id      text PRIMARY KEY,
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connections (
  session_id     uuid PRIMARY KEY,
  user_id        text NOT NULL,
  node_id        text NOT NULL,
  device_id      text NOT NULL DEFAULT '',
  protocol       text NOT NULL,
  client_version text NOT NULL DEFAULT '',
  user_agent     text NOT NULL DEFAULT '',
  connected_at   timestamptz NOT NULL
);
-- A user's sessions, newest first; everyone's newest first (the operator listing pages by it).
CREATE INDEX connections_by_user ON connections (user_id, connected_at DESC, session_id DESC);
CREATE INDEX connections_newest ON connections (connected_at DESC, session_id DESC);
-- A node's streams: per-node counts, the node listing, and deleting a node's rows.
CREATE INDEX connections_by_node ON connections (node_id, connected_at DESC, session_id DESC);
