-- mod_offline version 1, PostgreSQL dialect: XEP-0160 offline messages.
-- Keep in step with ../sqlite/0001_offline_messages.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

-- BIGSERIAL orders messages by arrival.
CREATE TABLE IF NOT EXISTS offline_messages (
    id       BIGSERIAL PRIMARY KEY,
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    stamp    DOUBLE PRECISION NOT NULL,
    expire   DOUBLE PRECISION,
    from_jid TEXT NOT NULL,
    to_jid   TEXT NOT NULL,
    packet   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_messages_user ON offline_messages (server, username, id);
-- Only messages with an expiry are ever scanned by remove_expired_offline.
CREATE INDEX IF NOT EXISTS offline_messages_expire ON offline_messages (expire)
    WHERE expire IS NOT NULL;
