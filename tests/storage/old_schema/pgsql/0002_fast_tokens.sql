-- Suricate schema version 2, PostgreSQL dialect: XEP-0484 FAST tokens (mod_fast_auth_token).
-- Keep in step with ../sqlite/0002_fast_tokens.sql (the comments there say why the table
-- holds seeds rather than tokens).

CREATE TABLE fast_auth_token (
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
