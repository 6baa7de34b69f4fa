-- Full-text search on PostgreSQL (the backend used when OPENSEARCH_URL is unset), fed by the
-- search indexer from message events and rebuilt from messages by `npm run reindex`.

-- One row per indexed message, keyed like messages by (conversation_id, seq) so it shards
-- with them. `version` guards against stale events: a row only moves to a higher version,
-- and a deleted row stays a tombstone (deleted, no text) so no replayed event brings the
-- message back. Encrypted messages never get a row.
CREATE TABLE message_search (
  conversation_id uuid NOT NULL,
  seq             bigint NOT NULL,
  message_id      uuid NOT NULL,
  version         integer NOT NULL,
  sender_id       text NOT NULL,
  -- Millisecond precision, as clients see created_at, so date filters agree with them.
  created_at      timestamptz NOT NULL,
  deleted         boolean NOT NULL DEFAULT false,
  -- The normalized words of the text (src/search/text-analysis.ts); null once deleted.
  tsv             tsvector,
  PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX message_search_tsv ON message_search USING gin (tsv);
-- Newest first within a conversation: how a query for a very common word finds its newest
-- matches without ranking every one of them.
CREATE INDEX message_search_recent ON message_search (conversation_id, created_at DESC, message_id DESC);

-- Where an interrupted `npm run reindex` resumes: one row per backend being rebuilt.
CREATE TABLE search_reindex (
  backend          text PRIMARY KEY,
  -- The index being filled (OpenSearch: the new index behind the alias; PostgreSQL: the table).
  target           text NOT NULL,
  -- The last message copied, in (conversation_id, seq) order.
  after_conversation_id uuid,
  after_seq        bigint,
  copied           bigint NOT NULL DEFAULT 0,
  started_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);
