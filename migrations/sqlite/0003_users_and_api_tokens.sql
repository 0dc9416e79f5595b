-- Optional accounts for keycard's PasswordAuthenticator, and API bearer
-- tokens. Unused tables cost nothing; `{table}` is the sessions table name.
CREATE TABLE IF NOT EXISTS {table}_users (
    username      TEXT    PRIMARY KEY,  -- canonical form: NFKC, lower case
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,     -- argon2id PHC string
    disabled      INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,              -- microseconds since the epoch, UTC
    created_at    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {table}_api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   BLOB    NOT NULL UNIQUE,  -- SHA-256 of the token
    user_id      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS {table}_api_tokens_user_id ON {table}_api_tokens (user_id);
