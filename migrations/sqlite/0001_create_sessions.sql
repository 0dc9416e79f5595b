-- keycard sessions table (SQLite).
-- `{table}` is replaced by the validated table name.
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC: exact,
-- compact, and ordered as numbers.
CREATE TABLE IF NOT EXISTS {table} (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash       BLOB    NOT NULL,
    user_id          TEXT,
    ip_address       TEXT,
    is_api           INTEGER NOT NULL DEFAULT 0,
    auth_method      TEXT,
    authenticated_at INTEGER,
    persistent       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    last_activity    INTEGER NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    data             TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS {table}_user_id ON {table} (user_id);
CREATE INDEX IF NOT EXISTS {table}_last_activity ON {table} (last_activity);
CREATE INDEX IF NOT EXISTS {table}_created_at ON {table} (created_at);
