-- Passkeys (WebAuthn credentials): one row per registered authenticator.
-- `credential` is webauthn-rs's serialised passkey (public key, counter,
-- backup flags); the columns beside it are what keycard reads without
-- parsing it: the credential id it is found by, the user handle the
-- authenticator keeps (random, one per account, never the user name), the
-- signature counter a clone would fail to advance, the backup flags shown
-- to the user, and the label and dates of the "your passkeys" page.
CREATE TABLE IF NOT EXISTS {table}_passkeys (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT    NOT NULL,         -- canonical user name
    credential_id   BLOB    NOT NULL UNIQUE,
    user_handle     BLOB    NOT NULL,
    credential      TEXT    NOT NULL,         -- JSON
    sign_count      BIGINT  NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backup_state    BOOLEAN NOT NULL,
    label           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,         -- microseconds since the epoch, UTC
    last_used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS {table}_passkeys_user_id ON {table}_passkeys (user_id);
