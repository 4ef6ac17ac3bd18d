-- Suricate schema version 3, MySQL/MariaDB dialect: dynamic domains (MongooseIM's
-- service_domain_db) and domain admin passwords. Keep in step with ../sqlite/0003_domains.sql.
-- Static domains (general.hosts) are never stored: the configuration owns them.

CREATE TABLE IF NOT EXISTS domain_settings (
    domain     VARCHAR(191) NOT NULL PRIMARY KEY,
    host_type  VARCHAR(191) NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DOUBLE NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The password of `admin@DOMAIN` on the domain_admin GraphQL endpoint, as a SCRAM record
-- like account passwords (never the password itself).
CREATE TABLE IF NOT EXISTS domain_admins (
    domain       VARCHAR(191) NOT NULL PRIMARY KEY,
    pass_details TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
