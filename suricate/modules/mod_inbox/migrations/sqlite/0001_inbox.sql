-- mod_inbox version 1, SQLite dialect: one row per conversation of an account (its inbox
-- entry). Keep in step with ../pgsql/0001_inbox.sql.
CREATE TABLE inbox (
    server          TEXT NOT NULL,
    username        TEXT NOT NULL,
    remote_bare_jid TEXT NOT NULL,
    msg_id          TEXT NOT NULL DEFAULT '',   -- id attribute of the last message
    box             TEXT NOT NULL DEFAULT 'inbox',
    content         TEXT NOT NULL,              -- the last message, serialized
    timestamp       INTEGER NOT NULL,           -- of the last message, microseconds
    muted_until     INTEGER NOT NULL DEFAULT 0, -- microseconds; 0: not muted
    unread_count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, remote_bare_jid)
) WITHOUT ROWID;
CREATE INDEX inbox_box_timestamp ON inbox (server, username, box, timestamp);
