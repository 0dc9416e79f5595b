-- Optional accounts for keycard's PasswordAuthenticator, and API bearer
-- tokens. Unused tables cost nothing; `{table}` is the sessions table name.
CREATE TABLE IF NOT EXISTS {table}_users (
    username      VARCHAR(255) NOT NULL PRIMARY KEY,  -- canonical: NFKC, lower case
    display_name  VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,              -- argon2id PHC string
    disabled      BOOLEAN      NOT NULL DEFAULT FALSE,
    failures      BIGINT       NOT NULL DEFAULT 0,
    locked_until  DATETIME(6),
    created_at    DATETIME(6)  NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE IF NOT EXISTS {table}_api_tokens (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token_hash   BINARY(32)   NOT NULL UNIQUE,  -- SHA-256 of the token
    user_id      VARCHAR(255) NOT NULL,
    name         VARCHAR(255) NOT NULL,
    created_at   DATETIME(6)  NOT NULL,
    last_used_at DATETIME(6),
    INDEX {table}_api_tokens_user_id (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
