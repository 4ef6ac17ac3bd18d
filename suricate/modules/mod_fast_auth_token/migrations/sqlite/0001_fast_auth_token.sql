-- mod_fast_auth_token version 1, SQLite dialect: XEP-0484 FAST tokens.
-- IF NOT EXISTS: databases created before modules had their own migrations got this
-- table from the core schema (0002_fast_tokens).
-- Keep in step with ../pgsql/0001_fast_auth_token.sql.
--
-- Two slots per user and client (XEP-0484 §5): 'new' holds a token issued but not used yet,
-- 'current' the one in use, so a rotation lost on the wire never locks the client out.
-- No token is stored: a slot keeps a random seed, and the token is an HMAC of the seed, the
-- account's credential record and a server key kept outside the database
-- (mod_fast_auth_token), so a copy of this table logs nobody in, and a changed password or
-- a removed account makes the tokens useless.
-- *_count: the highest XEP-0484 replay counter accepted for the slot's token.

CREATE TABLE IF NOT EXISTS fast_auth_token (
    server         TEXT NOT NULL,
    username       TEXT NOT NULL,
    user_agent_id  TEXT NOT NULL,
    current_seed   TEXT,
    current_expire REAL,
    current_count  INTEGER,
    current_mech   TEXT,
    new_seed       TEXT,
    new_expire     REAL,
    new_count      INTEGER,
    new_mech       TEXT,
    PRIMARY KEY (server, username, user_agent_id)
) WITHOUT ROWID;
