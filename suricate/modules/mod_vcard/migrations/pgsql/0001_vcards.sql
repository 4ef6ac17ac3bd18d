-- mod_vcard version 1, PostgreSQL dialect: XEP-0054 vCards.
-- Keep in step with ../sqlite/0001_vcards.sql. IF NOT EXISTS: databases created before
-- modules had their own migrations got this table from the core schema (0001_initial).

CREATE TABLE IF NOT EXISTS vcards (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    vcard    TEXT NOT NULL,
    PRIMARY KEY (server, username)
);
