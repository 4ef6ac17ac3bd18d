-- mod_smart_markers version 1, SQLite dialect: the latest XEP-0333 marker an account sent in
-- a conversation (a peer or a room) and thread. Keep in step with ../pgsql/.
CREATE TABLE smart_markers (
    server    TEXT NOT NULL,
    username  TEXT NOT NULL,
    to_jid    TEXT NOT NULL,    -- the peer's or the room's bare JID
    thread    TEXT NOT NULL,    -- '' for the main thread
    type      TEXT NOT NULL,    -- received | displayed | acknowledged
    msg_id    TEXT NOT NULL,
    timestamp INTEGER NOT NULL, -- microseconds
    PRIMARY KEY (server, username, to_jid, thread)
) WITHOUT ROWID;
CREATE INDEX smart_markers_to ON smart_markers (to_jid, thread);
