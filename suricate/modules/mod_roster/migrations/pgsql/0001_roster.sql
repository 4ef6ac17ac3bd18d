-- mod_roster version 1, PostgreSQL dialect: RFC 6121 roster items, their groups and the
-- XEP-0237 roster version.
-- Keep in step with ../sqlite/0001_roster.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got these tables from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS roster_items (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    jid          TEXT COLLATE "C" NOT NULL,
    name         TEXT,
    subscription TEXT NOT NULL DEFAULT 'none'
                 CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask          TEXT NOT NULL DEFAULT 'none' CHECK (ask IN ('none', 'out', 'in', 'both')),
    approved     BOOLEAN NOT NULL DEFAULT FALSE,
    ask_message  TEXT,
    PRIMARY KEY (server, username, jid)
);

CREATE TABLE IF NOT EXISTS roster_groups (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    position INTEGER NOT NULL,
    grp      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, jid, grp),
    FOREIGN KEY (server, username, jid)
        REFERENCES roster_items (server, username, jid) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS roster_versions (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (server, username)
);
