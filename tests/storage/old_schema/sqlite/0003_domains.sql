-- Suricate schema version 3, SQLite dialect: dynamic domains (MongooseIM's service_domain_db)
-- and domain admin passwords. Keep in step with ../pgsql/0003_domains.sql.
-- Static domains (general.hosts) are never stored: the configuration owns them.

CREATE TABLE domain_settings (
    domain     TEXT NOT NULL PRIMARY KEY,
    host_type  TEXT NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at REAL NOT NULL
) WITHOUT ROWID;

-- The password of `admin@DOMAIN` on the domain_admin GraphQL endpoint, as a SCRAM record
-- like account passwords (never the password itself).
CREATE TABLE domain_admins (
    domain       TEXT NOT NULL PRIMARY KEY,
    pass_details TEXT NOT NULL
) WITHOUT ROWID;
