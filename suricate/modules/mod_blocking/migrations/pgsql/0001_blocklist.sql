-- mod_blocking version 1, PostgreSQL dialect: XEP-0191 blocklist.
-- Keep in step with ../sqlite/0001_blocklist.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS blocklist (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, jid)
);
