-- keycard sessions table (MySQL 8 / MariaDB 10.6+).
-- `{table}` is replaced by the validated table name.
-- Timestamps are DATETIME(6) holding UTC (keycard writes UTC, never the
-- server's local time). Text compares byte for byte (utf8mb4_bin), so user
-- ids "Alice" and "alice" are different users, as in the other stores.
CREATE TABLE IF NOT EXISTS {table} (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token_hash       BINARY(32)   NOT NULL,
    user_id          VARCHAR(255),
    ip_address       VARCHAR(64),
    is_api           BOOLEAN      NOT NULL DEFAULT FALSE,
    auth_method      VARCHAR(64),
    authenticated_at DATETIME(6),
    persistent       BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at       DATETIME(6)  NOT NULL,
    last_activity    DATETIME(6)  NOT NULL,
    version          BIGINT       NOT NULL DEFAULT 1,
    data             LONGTEXT     NOT NULL,
    INDEX {table}_user_id (user_id),
    INDEX {table}_last_activity (last_activity),
    INDEX {table}_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
