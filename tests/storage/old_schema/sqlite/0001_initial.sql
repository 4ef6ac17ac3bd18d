-- Suricate schema version 1, SQLite dialect.
-- Keep in step with ../pgsql/0001_initial.sql: same tables, columns and keys; only the
-- types differ. One statement per `;` at the end of a line (see sqlite.py, _statements).
--
-- No foreign key from the account data to `users`: anonymous, external and HTTP auth
-- accounts have a roster and offline messages but no `users` row. remove_user clears
-- every table by (server, username) instead.
-- WITHOUT ROWID: the tables are looked up by their composite text key only, so storing
-- rows in the key's B-tree saves an index and a lookup.

CREATE TABLE users (
    server       TEXT NOT NULL,
    username     TEXT NOT NULL,
    password     TEXT,
    pass_details TEXT,
    created_at   REAL NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;

CREATE TABLE roster_items (
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

CREATE TABLE roster_groups (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    position INTEGER NOT NULL,
    grp      TEXT NOT NULL,
    PRIMARY KEY (server, username, jid, grp),
    FOREIGN KEY (server, username, jid)
        REFERENCES roster_items (server, username, jid) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE roster_versions (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;

-- A rowid table: `id` (alias of the rowid) is always larger than every id present, so it
-- orders messages by arrival.
CREATE TABLE offline_messages (
    id       INTEGER PRIMARY KEY,
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    stamp    REAL NOT NULL,
    expire   REAL,
    from_jid TEXT NOT NULL,
    to_jid   TEXT NOT NULL,
    packet   TEXT NOT NULL
);
CREATE INDEX offline_messages_user ON offline_messages (server, username, id);
-- Only messages with an expiry are ever scanned by remove_expired_offline.
CREATE INDEX offline_messages_expire ON offline_messages (expire) WHERE expire IS NOT NULL;

CREATE TABLE last_activity (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    seconds  INTEGER NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;

CREATE TABLE private_storage (
    server    TEXT NOT NULL,
    username  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (server, username, namespace)
) WITHOUT ROWID;

CREATE TABLE vcards (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    vcard    TEXT NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;

CREATE TABLE blocklist (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    jid      TEXT NOT NULL,
    PRIMARY KEY (server, username, jid)
) WITHOUT ROWID;
