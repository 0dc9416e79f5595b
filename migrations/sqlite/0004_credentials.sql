-- What signed each session in (an API token's `api-token:17`), so that
-- revoking the credential ends the sessions it opened.
ALTER TABLE {table} ADD COLUMN credential_id TEXT;
-- Bumped by every password change and by disabling the account: a
-- credential version that one-time links and reset tokens are bound to.
ALTER TABLE {table}_users ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0;
