-- Suricate schema version 1, MySQL/MariaDB dialect: the core tables (accounts).
-- Keep in step with ../sqlite/0001_initial.sql: same tables, columns and keys.
--
-- The conventions of every MySQL migration (core and modules; docs/storage.md):
-- * InnoDB (transactions, row locks), utf8mb4 (all of Unicode, not MySQL's 3-byte "utf8"),
--   collation utf8mb4_bin: code point order, what SQLite, PostgreSQL's COLLATE "C" and
--   Python's sorted() give, and case-sensitive comparisons (JIDs are compared prepared).
-- * Key columns are VARCHARs sized to fit InnoDB's 3072-byte index limit, i.e. 768 utf8mb4
--   characters per key: domains (server, muc_host) and localparts (username, room) are
--   VARCHAR(191), which leaves 386 characters for the rest of a key. A longer value is
--   refused (strict mode) with a StorageError rather than truncated.
-- * Stanzas, payloads and forms are LONGTEXT (TEXT stops at 64 KiB); other free text TEXT.
-- * CREATE TABLE IF NOT EXISTS with the indexes inline: MySQL commits DDL implicitly, so a
--   migration interrupted half-way must be safe to run again.

CREATE TABLE IF NOT EXISTS users (
    server       VARCHAR(191) NOT NULL,
    username     VARCHAR(191) NOT NULL,
    password     TEXT,
    pass_details TEXT,
    created_at   DOUBLE NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
