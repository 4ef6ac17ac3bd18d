-- mod_blocking version 2, PostgreSQL dialect: XEP-0377 reports attached to a block.
-- Keep in step with ../sqlite/0002_spam_reports.sql (which says what the columns hold).
CREATE TABLE IF NOT EXISTS spam_report (
    id          BIGSERIAL PRIMARY KEY,
    server      TEXT COLLATE "C" NOT NULL,
    username    TEXT COLLATE "C" NOT NULL,
    reported    TEXT COLLATE "C" NOT NULL,
    reason      TEXT NOT NULL,
    report_text TEXT,
    stanza_ids  TEXT NOT NULL,
    messages    TEXT NOT NULL,
    processing  TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS spam_report_reported ON spam_report (reported, id);
CREATE INDEX IF NOT EXISTS spam_report_server ON spam_report (server, id);
