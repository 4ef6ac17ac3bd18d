-- mod_muc_light version 1, MySQL/MariaDB dialect: rooms, their members and the users' blocking
-- lists. Keep in step with ../sqlite/0001_muc_light.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql (service is a domain, room a localpart).
CREATE TABLE IF NOT EXISTS muc_light_rooms (
    service VARCHAR(191) NOT NULL,
    room    VARCHAR(191) NOT NULL,
    version TEXT NOT NULL,
    config  LONGTEXT NOT NULL,
    PRIMARY KEY (service, room)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS muc_light_occupants (
    service     VARCHAR(191) NOT NULL,
    room        VARCHAR(191) NOT NULL,
    server      VARCHAR(191) NOT NULL,
    username    VARCHAR(191) NOT NULL,
    affiliation VARCHAR(16) NOT NULL,
    PRIMARY KEY (service, room, server, username),
    INDEX muc_light_occupants_user (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Key: 191 + 191 + 191 (service) + 8 (what: room or user) + 186 (who, a bare JID) characters.
CREATE TABLE IF NOT EXISTS muc_light_blocking (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    service  VARCHAR(191) NOT NULL,
    what     VARCHAR(8) NOT NULL,
    who      VARCHAR(186) NOT NULL,
    PRIMARY KEY (server, username, service, what, who)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
