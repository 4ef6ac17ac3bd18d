-- mod_last version 1, PostgreSQL dialect: XEP-0012 last activity.
-- Keep in step with ../sqlite/0001_last_activity.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS last_activity (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    seconds  BIGINT NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (server, username)
);
