-- A second factor: one TOTP enrolment per account (unconfirmed until its
-- first valid code; `last_step` is the last time step accepted, so that no
-- code is accepted twice) and its single-use recovery codes, of which only
-- the SHA-256 is kept. The TOTP secret is stored as it is: see
-- `SecondFactor` on protecting it at rest.
CREATE TABLE IF NOT EXISTS {table}_totp (
    user_id      TEXT    PRIMARY KEY,  -- canonical user name
    secret       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,     -- microseconds since the epoch, UTC
    confirmed_at INTEGER,              -- NULL until the first valid code
    last_step    INTEGER               -- Unix time / 30 of the last code accepted
);
CREATE TABLE IF NOT EXISTS {table}_recovery_codes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT    NOT NULL,
    code_hash BLOB    NOT NULL UNIQUE,  -- SHA-256 of the code
    used_at   INTEGER
);
CREATE INDEX IF NOT EXISTS {table}_recovery_codes_user_id ON {table}_recovery_codes (user_id);
