-- mod_fast_auth_token version 1, MySQL/MariaDB dialect: XEP-0484 FAST tokens.
-- Keep in step with ../sqlite/0001_fast_auth_token.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
CREATE TABLE IF NOT EXISTS fast_auth_token (
    server         VARCHAR(191) NOT NULL,
    username       VARCHAR(191) NOT NULL,
    user_agent_id  VARCHAR(384) NOT NULL,
    current_seed   TEXT,
    current_expire DOUBLE,
    current_count  BIGINT,
    current_mech   TEXT,
    new_seed       TEXT,
    new_expire     DOUBLE,
    new_count      BIGINT,
    new_mech       TEXT,
    PRIMARY KEY (server, username, user_agent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
