-- One-time tokens (sign-in links, password resets): single use, short
-- lived, bound to the account's credential version; only the hash is kept.
CREATE TABLE IF NOT EXISTS {table}_one_time_tokens (
    id                 BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token_hash         BINARY(32)   NOT NULL UNIQUE,  -- SHA-256 of the token
    user_id            VARCHAR(255) NOT NULL,
    purpose            VARCHAR(64)  NOT NULL,
    credential_version BIGINT       NOT NULL,
    created_at         DATETIME(6)  NOT NULL,
    expires_at         DATETIME(6)  NOT NULL,
    used_at            DATETIME(6),
    INDEX {table}_one_time_tokens_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
