-- mod_muc version 4, MySQL/MariaDB dialect: registered nicks. Keep in step with
-- ../sqlite/0004_muc_registered.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS muc_registered (
    muc_host VARCHAR(191) NOT NULL,
    room     VARCHAR(191) NOT NULL,
    jid      VARCHAR(384) NOT NULL,
    nick     VARCHAR(384) NOT NULL,
    PRIMARY KEY (muc_host, room, jid),
    UNIQUE KEY i_muc_registered_nick (muc_host, room, nick)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
