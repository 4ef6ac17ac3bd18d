-- mod_event_pusher version 1, MySQL/MariaDB dialect: XEP-0357 push registrations.
-- Keep in step with ../sqlite/0001_push_registrations.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql. Key: 191 + 191 + 256 (the push
-- service's JID) + 128 (its node, an opaque token) characters.
CREATE TABLE IF NOT EXISTS push_registrations (
    server     VARCHAR(191) NOT NULL,
    username   VARCHAR(191) NOT NULL,
    service    VARCHAR(256) NOT NULL,
    node       VARCHAR(128) NOT NULL,
    form       LONGTEXT NOT NULL,
    created_at DOUBLE NOT NULL,
    PRIMARY KEY (server, username, service, node)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
