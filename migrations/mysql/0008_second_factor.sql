-- A second factor: one TOTP enrolment per account (unconfirmed until its
-- first valid code; `last_step` is the last time step accepted, so that no
-- code is accepted twice) and its single-use recovery codes, of which only
-- the SHA-256 is kept. The TOTP secret is stored as it is: see
-- `SecondFactor` on protecting it at rest.
CREATE TABLE IF NOT EXISTS {table}_totp (
    user_id      VARCHAR(255)  NOT NULL PRIMARY KEY,  -- canonical user name
    secret       VARBINARY(64) NOT NULL,
    created_at   DATETIME(6)   NOT NULL,
    confirmed_at DATETIME(6),                         -- NULL until the first valid code
    last_step    BIGINT                               -- Unix time / 30 of the last code accepted
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE IF NOT EXISTS {table}_recovery_codes (
    id        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id   VARCHAR(255) NOT NULL,
    code_hash BINARY(32)   NOT NULL UNIQUE,  -- SHA-256 of the code
    used_at   DATETIME(6),
    INDEX {table}_recovery_codes_user_id (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
