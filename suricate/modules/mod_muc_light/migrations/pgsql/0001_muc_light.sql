-- mod_muc_light version 1, PostgreSQL dialect: rooms, their members and the users' blocking
-- lists. Keep in step with ../sqlite/0001_muc_light.sql.
CREATE TABLE muc_light_rooms (
    service TEXT COLLATE "C" NOT NULL,
    room    TEXT COLLATE "C" NOT NULL,
    version TEXT NOT NULL,
    config  TEXT NOT NULL,
    PRIMARY KEY (service, room)
);

CREATE TABLE muc_light_occupants (
    service     TEXT COLLATE "C" NOT NULL,
    room        TEXT COLLATE "C" NOT NULL,
    server      TEXT COLLATE "C" NOT NULL,
    username    TEXT COLLATE "C" NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, room, server, username)
);

CREATE INDEX muc_light_occupants_user ON muc_light_occupants (server, username);

CREATE TABLE muc_light_blocking (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    service  TEXT COLLATE "C" NOT NULL,
    what     TEXT NOT NULL,
    who      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, service, what, who)
);
