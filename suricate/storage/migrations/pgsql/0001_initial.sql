-- Suricate schema version 1, PostgreSQL dialect: the core tables (accounts).
-- Keep in step with ../sqlite/0001_initial.sql: same tables, columns and keys.
--
-- This script used to create every feature's tables too; they now belong to their modules
-- (see ../sqlite/0001_initial.sql for why editing this applied migration is safe: the
-- modules' first migrations use CREATE ... IF NOT EXISTS with the same DDL).
--
-- No foreign key from the account data to `users`: anonymous, external and HTTP auth
-- accounts have module data but no `users` row. remove_user clears every module table by
-- (server, username) instead.
-- COLLATE "C" on the key columns: byte order, which is what SQLite and Python's sorted()
-- give, so both backends list users, rosters and blocklists in the same order; it also
-- makes the B-tree comparisons cheaper than a locale collation.

CREATE TABLE users (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    password     TEXT,
    pass_details TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (server, username)
);
