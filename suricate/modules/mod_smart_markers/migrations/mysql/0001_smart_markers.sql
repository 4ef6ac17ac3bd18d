-- mod_smart_markers version 1, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0001_smart_markers.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql. Key: 191 + 191 + 256 (the peer's or
-- room's bare JID) + 128 (thread) characters.
CREATE TABLE IF NOT EXISTS smart_markers (
    server    VARCHAR(191) NOT NULL,
    username  VARCHAR(191) NOT NULL,
    to_jid    VARCHAR(256) NOT NULL,
    thread    VARCHAR(128) NOT NULL,
    type      VARCHAR(16) NOT NULL,
    msg_id    TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    PRIMARY KEY (server, username, to_jid, thread),
    INDEX smart_markers_to (to_jid, thread)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
