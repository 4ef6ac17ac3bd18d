-- mod_last version 1, SQLite dialect: XEP-0012 last activity.
-- Keep in step with ../pgsql/0001_last_activity.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS last_activity (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    seconds  INTEGER NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;
