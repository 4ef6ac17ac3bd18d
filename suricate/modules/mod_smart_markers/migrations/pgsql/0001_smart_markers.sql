-- mod_smart_markers version 1, PostgreSQL dialect: the latest XEP-0333 marker an account
-- sent in a conversation (a peer or a room) and thread. Keep in step with ../sqlite/.
CREATE TABLE smart_markers (
    server    TEXT COLLATE "C" NOT NULL,
    username  TEXT COLLATE "C" NOT NULL,
    to_jid    TEXT COLLATE "C" NOT NULL,
    thread    TEXT COLLATE "C" NOT NULL,
    type      TEXT NOT NULL,
    msg_id    TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    PRIMARY KEY (server, username, to_jid, thread)
);
CREATE INDEX smart_markers_to ON smart_markers (to_jid, thread);
