-- mod_mam's MUC archive version 1, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0001_mam_muc.sql; conventions in suricate/storage/migrations/mysql/0001_initial.sql.
-- nick is VARCHAR(380) so that i_mam_muc_message_nick (191 + 191 + 380 characters and the
-- 8-byte id) stays within InnoDB's 3072-byte key.
CREATE TABLE IF NOT EXISTS mam_muc_message (
    server      VARCHAR(191) NOT NULL,
    room        VARCHAR(191) NOT NULL,
    id          BIGINT NOT NULL PRIMARY KEY,
    sender_jid  TEXT NOT NULL,
    nick        VARCHAR(380) NOT NULL,
    origin_id   TEXT,
    search_body LONGTEXT,
    message     LONGTEXT NOT NULL,
    INDEX i_mam_muc_message_room (server, room, id),
    INDEX i_mam_muc_message_nick (server, room, nick, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
