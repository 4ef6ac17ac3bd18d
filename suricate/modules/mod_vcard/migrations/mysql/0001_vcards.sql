-- mod_vcard version 1, MySQL/MariaDB dialect: XEP-0054 vCards (LONGTEXT: photos inline).
-- Keep in step with ../sqlite/0001_vcards.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS vcards (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    vcard    LONGTEXT NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
