-- Moderation: users' reports, suspensions and bans, and the operators' audit log.
-- These tables are small and read across users: in a sharded deployment they stay on the
-- coordinator (Citus: local or reference tables), never distributed.

-- target_kind: 1 message, 2 story, 3 user. target_key names the target in one string
-- ('m:<conversation>:<seq>', 's:<story>', 'u:<user>') so a reporter has one open report per
-- target. status: 1 open, 2 resolved. reason and resolution: the proto enums' numbers.
CREATE TABLE reports (
  id               uuid PRIMARY KEY,
  reporter_id      text NOT NULL,
  reported_user_id text NOT NULL,
  target_kind      smallint NOT NULL CHECK (target_kind BETWEEN 1 AND 3),
  target_key       text NOT NULL,
  conversation_id  uuid,
  message_seq      bigint,
  story_id         uuid,
  target_user_id   text,
  reason           smallint NOT NULL,
  note             text NOT NULL DEFAULT '',
  content_snapshot text NOT NULL DEFAULT '',
  status           smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
  created_at       timestamptz NOT NULL,
  resolved_at      timestamptz,
  resolved_by      text,
  resolution       smallint
);
CREATE UNIQUE INDEX reports_one_open_per_reporter ON reports (reporter_id, target_key) WHERE status = 1;
CREATE INDEX reports_queue ON reports (status, id);
CREATE INDEX reports_about_user ON reports (reported_user_id, id);

-- At most one restriction per user: a new one replaces the old. kind: 1 suspended (until
-- set), 2 banned (until null). A suspension past its end simply stops applying.
CREATE TABLE account_restrictions (
  user_id    text PRIMARY KEY,
  kind       smallint NOT NULL CHECK (kind IN (1, 2)),
  until      timestamptz,
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  CHECK ((kind = 1) = (until IS NOT NULL))
);

-- Every operator action, kept for good (ids are time-ordered UUIDv7).
CREATE TABLE audit_log (
  id              uuid PRIMARY KEY,
  operator_id     text NOT NULL,
  action          smallint NOT NULL,
  target_user_id  text,
  report_id       uuid,
  target_kind     smallint,
  conversation_id uuid,
  message_seq     bigint,
  story_id        uuid,
  until           timestamptz,
  note            text NOT NULL DEFAULT '',
  created_at      timestamptz NOT NULL
);
CREATE INDEX audit_log_by_operator ON audit_log (operator_id, id);
CREATE INDEX audit_log_by_target ON audit_log (target_user_id, id);
