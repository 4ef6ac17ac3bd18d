-- mod_offline version 1, MySQL/MariaDB dialect: XEP-0160 offline messages.
-- Keep in step with ../sqlite/0001_offline_messages.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
-- AUTO_INCREMENT orders messages by arrival (LAST_INSERT_ID() is the new row's id).
-- MySQL has no partial index: offline_messages_expire covers the NULLs too.
CREATE TABLE IF NOT EXISTS offline_messages (
    id       BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    stamp    DOUBLE NOT NULL,
    expire   DOUBLE,
    from_jid TEXT NOT NULL,
    to_jid   TEXT NOT NULL,
    packet   LONGTEXT NOT NULL,
    INDEX offline_messages_user (server, username, id),
    INDEX offline_messages_expire (expire)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
