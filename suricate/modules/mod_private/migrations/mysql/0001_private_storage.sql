-- mod_private version 1, MySQL/MariaDB dialect: XEP-0049 private XML storage.
-- Keep in step with ../sqlite/0001_private_storage.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS private_storage (
    server    VARCHAR(191) NOT NULL,
    username  VARCHAR(191) NOT NULL,
    namespace VARCHAR(384) NOT NULL,
    data      LONGTEXT NOT NULL,
    PRIMARY KEY (server, username, namespace)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
