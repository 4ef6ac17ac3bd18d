-- mod_muc version 1, SQLite dialect: persistent rooms (XEP-0045 §10.1) and their
-- affiliations. Keep in step with ../pgsql/0001_muc_rooms.sql.
CREATE TABLE muc_rooms (
    muc_host       TEXT NOT NULL,
    room           TEXT NOT NULL,
    config         TEXT NOT NULL,   -- JSON of the room's configuration
    subject        TEXT NOT NULL,
    subject_author TEXT NOT NULL,
    PRIMARY KEY (muc_host, room)
) WITHOUT ROWID;

CREATE TABLE muc_affiliations (
    muc_host    TEXT NOT NULL,
    room        TEXT NOT NULL,
    jid         TEXT NOT NULL,      -- bare JID
    affiliation TEXT NOT NULL,      -- owner, admin, member, outcast
    reason      TEXT NOT NULL,
    PRIMARY KEY (muc_host, room, jid)
) WITHOUT ROWID;
