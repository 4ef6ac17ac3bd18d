-- mod_blocking version 1, MySQL/MariaDB dialect: XEP-0191 blocklists.
-- Keep in step with ../sqlite/0001_blocklist.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql (191 + 191 + 384 characters of key).
CREATE TABLE IF NOT EXISTS blocklist (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    jid      VARCHAR(384) NOT NULL,
    PRIMARY KEY (server, username, jid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
