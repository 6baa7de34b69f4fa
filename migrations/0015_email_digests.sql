-- Email digests (src/email/): one row per user who ever set digest settings.
-- covered_until is the high-water mark of what digests have considered: items created at or
-- before it are never emailed again (sent, or read in time, or excluded). The sender advances it
-- in the same statement that records a sent digest, so a restart never resends.
-- lease_until / lease_token: a node claims a due user for the length of one send
-- (FOR UPDATE SKIP LOCKED on the claim; the lease keeps others off while SMTP talks).
CREATE TABLE email_digest_settings (
  user_id       text PRIMARY KEY,
  email_address text NOT NULL DEFAULT '' CHECK (length(email_address) <= 254),
  frequency     smallint NOT NULL CHECK (frequency IN (1, 2, 3)), -- 1 OFF, 2 HOURLY, 3 DAILY
  last_sent_at  timestamptz,
  covered_until timestamptz NOT NULL DEFAULT now(),
  lease_until   timestamptz,
  lease_token   text,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CHECK (frequency = 1 OR email_address <> '')
);

-- The sweep looks only at users with digests on, least recently emailed first.
CREATE INDEX email_digest_settings_enabled ON email_digest_settings (last_sent_at NULLS FIRST) WHERE frequency <> 1;
