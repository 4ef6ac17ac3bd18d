-- mod_blocking version 1, SQLite dialect: XEP-0191 blocklist.
-- Keep in step with ../pgsql/0001_blocklist.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS blocklist (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    PRIMARY KEY (server, username, jid)
) WITHOUT ROWID;
