-- mod_auth_token version 1, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0001_auth_token.sql; conventions in suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS auth_token (
    server    VARCHAR(191) NOT NULL,
    username  VARCHAR(191) NOT NULL,
    seq_no    BIGINT NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
