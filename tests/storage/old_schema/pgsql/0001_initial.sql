-- Suricate schema version 1, PostgreSQL dialect.
-- Keep in step with ../sqlite/0001_initial.sql: same tables, columns and keys.
--
-- No foreign key from the account data to `users`: anonymous, external and HTTP auth
-- accounts have a roster and offline messages but no `users` row. remove_user clears
-- every table by (server, username) instead.
-- COLLATE "C" on the key columns: byte order, which is what SQLite and Python's sorted()
-- give, so both backends list users, rosters and blocklists in the same order; it also
-- makes the B-tree comparisons cheaper than a locale collation.

CREATE TABLE users (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    password     TEXT,
    pass_details TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (server, username)
);

CREATE TABLE roster_items (
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

CREATE TABLE roster_groups (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    position INTEGER NOT NULL,
    grp      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, jid, grp),
    FOREIGN KEY (server, username, jid)
        REFERENCES roster_items (server, username, jid) ON DELETE CASCADE
);

CREATE TABLE roster_versions (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (server, username)
);

-- BIGSERIAL orders messages by arrival.
CREATE TABLE offline_messages (
    id       BIGSERIAL PRIMARY KEY,
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    stamp    DOUBLE PRECISION NOT NULL,
    expire   DOUBLE PRECISION,
    from_jid TEXT NOT NULL,
    to_jid   TEXT NOT NULL,
    packet   TEXT NOT NULL
);
CREATE INDEX offline_messages_user ON offline_messages (server, username, id);
-- Only messages with an expiry are ever scanned by remove_expired_offline.
CREATE INDEX offline_messages_expire ON offline_messages (expire) WHERE expire IS NOT NULL;

CREATE TABLE last_activity (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    seconds  BIGINT NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (server, username)
);

CREATE TABLE private_storage (
    server    TEXT COLLATE "C" NOT NULL,
    username  TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (server, username, namespace)
);

CREATE TABLE vcards (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    vcard    TEXT NOT NULL,
    PRIMARY KEY (server, username)
);

CREATE TABLE blocklist (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, jid)
);
