-- Passkeys (WebAuthn credentials): one row per registered authenticator.
-- `credential` is webauthn-rs's serialised passkey (public key, counter,
-- backup flags); the columns beside it are what keycard reads without
-- parsing it: the credential id it is found by (at most 1023 bytes, the
-- WebAuthn limit), the user handle the authenticator keeps (random, one
-- per account, never the user name), the signature counter a clone would
-- fail to advance, the backup flags shown to the user, and the label and
-- dates of the "your passkeys" page.
CREATE TABLE IF NOT EXISTS {table}_passkeys (
    id              BIGINT          NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id         VARCHAR(255)    NOT NULL,  -- canonical user name
    credential_id   VARBINARY(1023) NOT NULL UNIQUE,
    user_handle     VARBINARY(64)   NOT NULL,
    credential      TEXT            NOT NULL,  -- JSON
    sign_count      BIGINT          NOT NULL,
    backup_eligible BOOLEAN         NOT NULL,
    backup_state    BOOLEAN         NOT NULL,
    label           VARCHAR(255)    NOT NULL,
    created_at      DATETIME(6)     NOT NULL,
    last_used_at    DATETIME(6),
    INDEX {table}_passkeys_user_id (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
