-- mod_blocking version 2, MySQL/MariaDB dialect: XEP-0377 reports attached to a block.
-- Keep in step with ../sqlite/0002_spam_reports.sql (which says what the columns hold);
-- conventions in suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS spam_report (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    server      VARCHAR(191) NOT NULL,
    username    VARCHAR(191) NOT NULL,
    reported    VARCHAR(384) NOT NULL,
    reason      TEXT NOT NULL,
    report_text TEXT,
    stanza_ids  TEXT NOT NULL,
    messages    LONGTEXT NOT NULL,
    processing  TEXT NOT NULL,
    created_at  DOUBLE NOT NULL,
    INDEX spam_report_reported (reported, id),
    INDEX spam_report_server (server, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
