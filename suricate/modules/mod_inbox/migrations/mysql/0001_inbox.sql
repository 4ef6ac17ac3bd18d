-- mod_inbox version 1, MySQL/MariaDB dialect: XEP-0430 inbox. Keep in step with
-- ../sqlite/0001_inbox.sql; conventions in suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS inbox (
    server          VARCHAR(191) NOT NULL,
    username        VARCHAR(191) NOT NULL,
    remote_bare_jid VARCHAR(384) NOT NULL,
    msg_id          VARCHAR(1023) NOT NULL DEFAULT '',
    box             VARCHAR(64) NOT NULL DEFAULT 'inbox',
    content         LONGTEXT NOT NULL,
    timestamp       BIGINT NOT NULL,
    muted_until     BIGINT NOT NULL DEFAULT 0,
    unread_count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, remote_bare_jid),
    INDEX inbox_box_timestamp (server, username, box, timestamp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
