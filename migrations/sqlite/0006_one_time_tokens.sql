-- One-time tokens (sign-in links, password resets): single use, short
-- lived, bound to the account's credential version; only the hash is kept.
CREATE TABLE IF NOT EXISTS {table}_one_time_tokens (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash         BLOB    NOT NULL UNIQUE,  -- SHA-256 of the token
    user_id            TEXT    NOT NULL,
    purpose            TEXT    NOT NULL,
    credential_version BIGINT  NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    used_at            INTEGER
);
CREATE INDEX IF NOT EXISTS {table}_one_time_tokens_expires_at ON {table}_one_time_tokens (expires_at);
