-- mod_muc version 1, PostgreSQL dialect: persistent rooms (XEP-0045 §10.1) and their
-- affiliations. Keep in step with ../sqlite/0001_muc_rooms.sql.
CREATE TABLE muc_rooms (
    muc_host       TEXT COLLATE "C" NOT NULL,
    room           TEXT COLLATE "C" NOT NULL,
    config         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    subject_author TEXT NOT NULL,
    PRIMARY KEY (muc_host, room)
);

CREATE TABLE muc_affiliations (
    muc_host    TEXT COLLATE "C" NOT NULL,
    room        TEXT COLLATE "C" NOT NULL,
    jid         TEXT COLLATE "C" NOT NULL,
    affiliation TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (muc_host, room, jid)
);
