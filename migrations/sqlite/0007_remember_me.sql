-- Remember-me series: one row per remembered browser. The cookie holds
-- the series and a token; only their SHA-256 hashes are kept. The token
-- rotates at every restore; the one before is kept briefly so that the
-- burst of requests after a browser restart is not taken for theft.
CREATE TABLE IF NOT EXISTS {table}_remember (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    series_hash        BLOB    NOT NULL UNIQUE,
    token_hash         BLOB    NOT NULL,
    previous_hash      BLOB,
    rotated_at         INTEGER,
    user_id            TEXT    NOT NULL,
    credential_version BIGINT  NOT NULL,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    device             TEXT
);
CREATE INDEX IF NOT EXISTS {table}_remember_user_id ON {table}_remember (user_id);
CREATE INDEX IF NOT EXISTS {table}_remember_expires_at ON {table}_remember (expires_at);
