-- mod_privacy version 1, PostgreSQL dialect: XEP-0016 privacy lists.
-- Keep in step with ../sqlite/0001_privacy.sql (the meaning of the columns is there).

CREATE TABLE IF NOT EXISTS privacy_lists (
    server     TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (server, username, name)
);

CREATE TABLE IF NOT EXISTS privacy_list_items (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    name     TEXT COLLATE "C" NOT NULL,
    ord      BIGINT NOT NULL,
    type     TEXT,
    value    TEXT,
    action   TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    stanzas  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, name, ord)
);
