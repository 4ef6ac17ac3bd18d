-- mod_mam version 1, PostgreSQL dialect. Keep in step with ../sqlite/0001_mam.sql.
-- One row per archived message per account (XEP-0313): the sender's and the recipient's
-- archives each hold their copy. id = microseconds << 8 | node (DESIGN §7), unique per
-- archive, so (server, username, id) is the key and paging is a range scan on it.
CREATE TABLE mam_message (
    server          TEXT COLLATE "C" NOT NULL,
    username        TEXT COLLATE "C" NOT NULL,
    id              BIGINT NOT NULL,
    remote_bare_jid TEXT COLLATE "C" NOT NULL,
    remote_resource TEXT COLLATE "C" NOT NULL,
    direction       CHAR(1) NOT NULL,   -- 'I' incoming, 'O' outgoing
    from_jid        TEXT NOT NULL,
    origin_id       TEXT COLLATE "C",   -- XEP-0359 origin-id (or the message id): retraction
    search_body     TEXT,               -- normalized body, when full_text_search is on
    message         TEXT NOT NULL,      -- the stanza as delivered
    PRIMARY KEY (server, username, id)
);
CREATE INDEX i_mam_message_with ON mam_message (server, username, remote_bare_jid, id);
CREATE INDEX i_mam_message_origin ON mam_message (server, username, remote_bare_jid, origin_id)
    WHERE origin_id IS NOT NULL;
-- XEP-0441 preferences: default mode and the always/never lists (JIDs, one per line).
CREATE TABLE mam_prefs (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    default_mode TEXT NOT NULL,
    always_jids  TEXT NOT NULL,
    never_jids   TEXT NOT NULL,
    PRIMARY KEY (server, username)
);
