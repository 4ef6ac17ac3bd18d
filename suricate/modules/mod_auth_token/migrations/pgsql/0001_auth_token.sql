-- mod_auth_token version 1, PostgreSQL dialect. Keep in step with ../sqlite/0001_auth_token.sql
-- (the comments there say what the table holds).
CREATE TABLE IF NOT EXISTS auth_token (
    server    TEXT COLLATE "C" NOT NULL,
    username  TEXT COLLATE "C" NOT NULL,
    seq_no    BIGINT NOT NULL,
    PRIMARY KEY (server, username)
);
