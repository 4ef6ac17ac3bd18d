-- mod_last version 1, MySQL/MariaDB dialect: XEP-0012 last activity.
-- Keep in step with ../sqlite/0001_last_activity.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS last_activity (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    seconds  BIGINT NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
