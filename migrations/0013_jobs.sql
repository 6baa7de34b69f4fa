-- Asynchronous jobs (JobService): exports and search reindexing. The job row is the truth about
-- a job; its work is split into chunks, each published as a JetStream work item that any
-- consumer node may take. A chunk's part file and its row are written idempotently, so a
-- redelivered chunk (its node was killed) rewrites the same part and counts once.

CREATE TABLE jobs (
  id              uuid PRIMARY KEY,              -- UUIDv7: newest first is id order
  kind            smallint NOT NULL CHECK (kind IN (1, 2, 3)),     -- parley.v1.JobKind
  owner_id        text NOT NULL,
  conversation_id uuid,
  format          smallint NOT NULL DEFAULT 0,   -- parley.v1.ExportFormat (0 for no file)
  -- What the chunks need and must all agree on (e.g. the seq bound and retention clock).
  params          jsonb NOT NULL DEFAULT '{}',
  status          smallint NOT NULL CHECK (status BETWEEN 1 AND 5), -- parley.v1.JobStatus
  items_total     bigint NOT NULL DEFAULT 0,
  items_done      bigint NOT NULL DEFAULT 0,
  error           text NOT NULL DEFAULT '',
  output_name     text,
  output_type     text,
  output_size     bigint,
  output_sha256   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  finished_at     timestamptz,
  expires_at      timestamptz,
  -- When a job_progressed event was last appended (they are throttled to about one a second).
  last_event_at   timestamptz,
  -- When any chunk last moved: the rescue sweep republishes the work of jobs quiet for long.
  updated_at      timestamptz NOT NULL DEFAULT now()
);
-- ListJobs (owner, newest first, keyset) and the per-user active limit.
CREATE INDEX jobs_by_owner ON jobs (owner_id, id DESC);
-- The sweeps: active jobs to rescue, ended ones whose output expired.
CREATE INDEX jobs_active ON jobs (updated_at) WHERE status IN (1, 2);
CREATE INDEX jobs_expiring ON jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE job_chunks (
  job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  chunk_no   integer NOT NULL,
  -- The chunk's range of work, e.g. {"fromSeq": 1, "toSeq": 5000}, or {"section": "profile"}.
  range      jsonb NOT NULL,
  status     smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)), -- 1 pending, 2 done
  items      bigint NOT NULL DEFAULT 0,
  attempts   integer NOT NULL DEFAULT 0,
  -- Who works on it and until when: another delivery of the chunk waits while the lease is
  -- live (a long chunk, e.g. a reindex, renews it) and takes it over once it lapses.
  runner     text,
  lease_until timestamptz,
  PRIMARY KEY (job_id, chunk_no)
);
