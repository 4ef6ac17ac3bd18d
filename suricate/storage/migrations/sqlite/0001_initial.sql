-- Suricate schema version 1, SQLite dialect: the core tables (accounts).
-- Keep in step with ../pgsql/0001_initial.sql: same tables, columns and keys; only the
-- types differ. One statement per `;` at the end of a line (see sqlite.py, _statements).
--
-- This script used to create every feature's tables too (roster, offline messages, last
-- activity, private XML, vCards, blocklist). They now belong to the modules that use them
-- (suricate/modules/mod_*/migrations/), recorded in module_schema_version. Editing an applied
-- migration is normally wrong; here it is safe because every module's first migration uses
-- CREATE ... IF NOT EXISTS with the DDL this file had: a database created by the old 0001
-- keeps its tables and rows (the module migration finds them and only records itself), and
-- a new database gets a feature's tables only when its module is enabled.
-- (tests/storage/test_module_stores.py upgrades a database made by the old scripts.)
--
-- No foreign key from the account data to `users`: anonymous, external and HTTP auth
-- accounts have module data but no `users` row. remove_user clears every module table by
-- (server, username) instead.
-- WITHOUT ROWID: the tables are looked up by their composite text key only, so storing
-- rows in the key's B-tree saves an index and a lookup.

CREATE TABLE users (
    server       TEXT NOT NULL,
    username     TEXT NOT NULL,
    password     TEXT,
    pass_details TEXT,
    created_at   REAL NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;
