-- Suricate schema version 3, PostgreSQL dialect: dynamic domains (MongooseIM's
-- service_domain_db) and domain admin passwords. Keep in step with ../sqlite/0003_domains.sql.
-- Static domains (general.hosts) are never stored: the configuration owns them.

CREATE TABLE domain_settings (
    domain     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    host_type  TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DOUBLE PRECISION NOT NULL
);

-- The password of `admin@DOMAIN` on the domain_admin GraphQL endpoint, as a SCRAM record
-- like account passwords (never the password itself).
CREATE TABLE domain_admins (
    domain       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pass_details TEXT NOT NULL
);
