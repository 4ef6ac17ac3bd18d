-- mod_roster version 1, SQLite dialect: RFC 6121 roster items, their groups and the
-- XEP-0237 roster version.
-- Keep in step with ../pgsql/0001_roster.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got these tables from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS roster_items (
    server       TEXT NOT NULL,
    username     TEXT NOT NULL,
    jid          TEXT NOT NULL,
    name         TEXT,
    subscription TEXT NOT NULL DEFAULT 'none'
                 CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask          TEXT NOT NULL DEFAULT 'none' CHECK (ask IN ('none', 'out', 'in', 'both')),
    approved     INTEGER NOT NULL DEFAULT 0 CHECK (approved IN (0, 1)),
    ask_message  TEXT,
    PRIMARY KEY (server, username, jid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS roster_groups (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    position INTEGER NOT NULL,
    grp      TEXT NOT NULL,
    PRIMARY KEY (server, username, jid, grp),
    FOREIGN KEY (server, username, jid)
        REFERENCES roster_items (server, username, jid) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS roster_versions (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;
