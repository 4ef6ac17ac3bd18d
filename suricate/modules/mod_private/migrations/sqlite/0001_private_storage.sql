-- mod_private version 1, SQLite dialect: XEP-0049 private XML, one row per namespace.
-- Keep in step with ../pgsql/0001_private_storage.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).
CREATE TABLE IF NOT EXISTS private_storage (
    server    TEXT NOT NULL,
    username  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (server, username, namespace)
) WITHOUT ROWID;
