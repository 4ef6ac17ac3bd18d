-- mod_smart_markers version 2, SQLite dialect. Keep in step with ../pgsql/0002_marker_per_type.sql.
-- One marker per (account, peer or room, thread, type), as MongooseIM 6.4's smart_markers key:
-- a client's `received` for a newer message no longer hides its `displayed` for an older one.
-- A primary key cannot change in SQLite: the table is copied.
CREATE TABLE smart_markers_v2 (
    server    TEXT NOT NULL,
    username  TEXT NOT NULL,
    to_jid    TEXT NOT NULL,    -- the peer's or the room's bare JID
    thread    TEXT NOT NULL,    -- '' for the main thread
    type      TEXT NOT NULL,    -- received | displayed | acknowledged
    msg_id    TEXT NOT NULL,
    timestamp INTEGER NOT NULL, -- microseconds
    PRIMARY KEY (server, username, to_jid, thread, type)
) WITHOUT ROWID;
INSERT INTO smart_markers_v2 SELECT server, username, to_jid, thread, type, msg_id, timestamp
    FROM smart_markers;
DROP TABLE smart_markers;
ALTER TABLE smart_markers_v2 RENAME TO smart_markers;
CREATE INDEX smart_markers_to ON smart_markers (to_jid, thread);
