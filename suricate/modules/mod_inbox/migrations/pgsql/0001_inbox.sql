-- mod_inbox version 1, PostgreSQL dialect: one row per conversation of an account (its inbox
-- entry). Keep in step with ../sqlite/0001_inbox.sql.
CREATE TABLE inbox (
    server          TEXT COLLATE "C" NOT NULL,
    username        TEXT COLLATE "C" NOT NULL,
    remote_bare_jid TEXT COLLATE "C" NOT NULL,
    msg_id          TEXT NOT NULL DEFAULT '',
    box             TEXT COLLATE "C" NOT NULL DEFAULT 'inbox',
    content         TEXT NOT NULL,
    timestamp       BIGINT NOT NULL,
    muted_until     BIGINT NOT NULL DEFAULT 0,
    unread_count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, remote_bare_jid)
);
CREATE INDEX inbox_box_timestamp ON inbox (server, username, box, timestamp);
