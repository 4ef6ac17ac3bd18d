-- mod_private version 1, PostgreSQL dialect: XEP-0049 private XML, one row per namespace.
-- Keep in step with ../sqlite/0001_private_storage.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).
CREATE TABLE IF NOT EXISTS private_storage (
    server    TEXT COLLATE "C" NOT NULL,
    username  TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (server, username, namespace)
);
