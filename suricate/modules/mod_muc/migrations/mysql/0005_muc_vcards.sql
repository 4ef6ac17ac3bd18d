-- mod_muc version 5, MySQL/MariaDB dialect: room vCards (XEP-0486 MUC Avatars over XEP-0054).
-- Keep in step with ../sqlite/0005_muc_vcards.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql (a payload: LONGTEXT).
CREATE TABLE IF NOT EXISTS muc_vcards (
    muc_host VARCHAR(191) NOT NULL,
    room     VARCHAR(191) NOT NULL,
    vcard    LONGTEXT NOT NULL,
    PRIMARY KEY (muc_host, room)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
