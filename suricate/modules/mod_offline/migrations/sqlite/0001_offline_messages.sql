-- mod_offline version 1, SQLite dialect: XEP-0160 offline messages.
-- Keep in step with ../pgsql/0001_offline_messages.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

-- A rowid table: `id` (alias of the rowid) is always larger than every id present, so it
-- orders messages by arrival.
CREATE TABLE IF NOT EXISTS offline_messages (
    id       INTEGER PRIMARY KEY,
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    stamp    REAL NOT NULL,
    expire   REAL,
    from_jid TEXT NOT NULL,
    to_jid   TEXT NOT NULL,
    packet   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_messages_user ON offline_messages (server, username, id);
-- Only messages with an expiry are ever scanned by remove_expired_offline.
CREATE INDEX IF NOT EXISTS offline_messages_expire ON offline_messages (expire)
    WHERE expire IS NOT NULL;
