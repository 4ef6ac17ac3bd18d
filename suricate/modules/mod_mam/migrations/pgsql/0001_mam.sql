-- mod_mam version 1, PostgreSQL dialect. Keep in step with ../sqlite/0001_mam.sql.
-- One row per archived message per account (XEP-0313): the sender's and the recipient's
-- archives each hold their copy, each with its own id = microseconds << 8 | node
-- (DESIGN §7): ids are unique on the server and grow with time, so the id is the key (in
-- SQLite the rowid: rows are appended) and paging is a range scan of (server, username, id).
CREATE TABLE mam_message (
    server          TEXT COLLATE "C" NOT NULL,
    username        TEXT COLLATE "C" NOT NULL,
    id              BIGINT PRIMARY KEY,
    remote_bare_jid TEXT COLLATE "C" NOT NULL,
    remote_resource TEXT COLLATE "C" NOT NULL,
    direction       CHAR(1) NOT NULL,   -- 'I' incoming, 'O' outgoing
    from_jid        TEXT NOT NULL,
    origin_id       TEXT COLLATE "C",   -- XEP-0359 origin-id (or the message id): retraction
    search_body     TEXT,               -- normalized body, when full_text_search is on
    message         TEXT NOT NULL       -- the stanza as delivered
);
CREATE INDEX i_mam_message_user ON mam_message (server, username, id);
CREATE INDEX i_mam_message_with ON mam_message (server, username, remote_bare_jid, id);
-- XEP-0441 preferences: default mode and the always/never lists (JIDs, one per line).
CREATE TABLE mam_prefs (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    default_mode TEXT NOT NULL,
    always_jids  TEXT NOT NULL,
    never_jids   TEXT NOT NULL,
    PRIMARY KEY (server, username)
);
