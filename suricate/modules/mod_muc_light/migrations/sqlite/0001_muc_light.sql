-- mod_muc_light version 1, SQLite dialect: rooms, their members and the users' blocking
-- lists. Keep in step with ../pgsql/0001_muc_light.sql.
CREATE TABLE muc_light_rooms (
    service TEXT NOT NULL,
    room    TEXT NOT NULL,
    version TEXT NOT NULL,
    config  TEXT NOT NULL,          -- JSON: internal key -> value
    PRIMARY KEY (service, room)
) WITHOUT ROWID;

CREATE TABLE muc_light_occupants (
    service     TEXT NOT NULL,
    room        TEXT NOT NULL,
    server      TEXT NOT NULL,      -- the member's bare JID, split
    username    TEXT NOT NULL,
    affiliation TEXT NOT NULL,      -- owner or member
    PRIMARY KEY (service, room, server, username)
) WITHOUT ROWID;

CREATE INDEX muc_light_occupants_user ON muc_light_occupants (server, username);

CREATE TABLE muc_light_blocking (
    server   TEXT NOT NULL,         -- the blocking account
    username TEXT NOT NULL,
    service  TEXT NOT NULL,
    what     TEXT NOT NULL,         -- room or user
    who      TEXT NOT NULL,         -- a bare JID
    PRIMARY KEY (server, username, service, what, who)
) WITHOUT ROWID;
