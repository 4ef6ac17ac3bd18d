-- mod_blocking version 2, SQLite dialect: XEP-0377 reports attached to a block.
-- Keep in step with ../pgsql/0002_spam_reports.sql. One row per reported JID of a block:
-- who reported (server, username), whom, why, and what the report named (stanza_ids, and
-- the archived messages found for them: JSON lists of strings). processing: the XEP-0377
-- opt-ins the reporter gave ("report-origin third-party"), stored, not acted on.
CREATE TABLE IF NOT EXISTS spam_report (
    id          INTEGER PRIMARY KEY,
    server      TEXT NOT NULL,
    username    TEXT NOT NULL,
    reported    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    report_text TEXT,
    stanza_ids  TEXT NOT NULL,
    messages    TEXT NOT NULL,
    processing  TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spam_report_reported ON spam_report (reported, id);
CREATE INDEX IF NOT EXISTS spam_report_server ON spam_report (server, id);
