-- mod_privacy version 1, MySQL/MariaDB dialect: XEP-0016 privacy lists.
-- Keep in step with ../sqlite/0001_privacy.sql (the meaning of the columns is there);
-- conventions in suricate/storage/migrations/mysql/0001_initial.sql: a list name is
-- VARCHAR(376): 191 + 191 + 376 characters and the order's 8 bytes stay under 3072 bytes.

CREATE TABLE IF NOT EXISTS privacy_lists (
    server     VARCHAR(191) NOT NULL,
    username   VARCHAR(191) NOT NULL,
    name       VARCHAR(376) NOT NULL,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (server, username, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS privacy_list_items (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    name     VARCHAR(376) NOT NULL,
    ord      BIGINT NOT NULL,
    type     VARCHAR(16),
    value    TEXT,
    action   VARCHAR(8) NOT NULL CHECK (action IN ('allow', 'deny')),
    stanzas  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (server, username, name, ord)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
