-- Remember-me series: one row per remembered browser. The cookie holds
-- the series and a token; only their SHA-256 hashes are kept. The token
-- rotates at every restore; the one before is kept briefly so that the
-- burst of requests after a browser restart is not taken for theft.
CREATE TABLE IF NOT EXISTS {table}_remember (
    id                 BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    series_hash        BINARY(32)   NOT NULL UNIQUE,
    token_hash         BINARY(32)   NOT NULL,
    previous_hash      BINARY(32),
    rotated_at         DATETIME(6),
    user_id            VARCHAR(255) NOT NULL,
    credential_version BIGINT       NOT NULL,
    created_at         DATETIME(6)  NOT NULL,
    last_used_at       DATETIME(6)  NOT NULL,
    expires_at         DATETIME(6)  NOT NULL,
    device             VARCHAR(64),
    INDEX {table}_remember_user_id (user_id),
    INDEX {table}_remember_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
