-- mod_privacy version 1, SQLite dialect: XEP-0016 privacy lists.
-- Keep in step with ../pgsql/0001_privacy.sql and ../mysql/0001_privacy.sql.
-- A list is a row of privacy_lists (is_default: the account's default list, XEP-0016 §2.5;
-- at most one per account, kept so by the store) and its items, unique by order (§2.1).
-- stanzas: the item's child elements as bits (1 message, 2 iq, 4 presence-in,
-- 8 presence-out); 0 when it has none, i.e. it applies to every stanza.

CREATE TABLE IF NOT EXISTS privacy_lists (
    server     TEXT NOT NULL,
    username   TEXT NOT NULL,
    name       TEXT NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (server, username, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS privacy_list_items (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    name     TEXT NOT NULL,
    ord      BIGINT NOT NULL,
    type     TEXT,
    value    TEXT,
    action   TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    stanzas  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, name, ord)
) WITHOUT ROWID;
