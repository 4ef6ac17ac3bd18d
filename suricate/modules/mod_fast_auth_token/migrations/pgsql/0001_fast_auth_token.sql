-- mod_fast_auth_token version 1, PostgreSQL dialect: XEP-0484 FAST tokens.
-- IF NOT EXISTS: databases created before modules had their own migrations got this
-- table from the core schema (0002_fast_tokens).
-- Keep in step with ../sqlite/0001_fast_auth_token.sql (the comments there say why the table
-- holds seeds rather than tokens).

CREATE TABLE IF NOT EXISTS fast_auth_token (
    server         TEXT COLLATE "C" NOT NULL,
    username       TEXT COLLATE "C" NOT NULL,
    user_agent_id  TEXT COLLATE "C" NOT NULL,
    current_seed   TEXT,
    current_expire DOUBLE PRECISION,
    current_count  BIGINT,
    current_mech   TEXT,
    new_seed       TEXT,
    new_expire     DOUBLE PRECISION,
    new_count      BIGINT,
    new_mech       TEXT,
    PRIMARY KEY (server, username, user_agent_id)
);
