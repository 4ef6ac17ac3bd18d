-- mod_muc version 1, MySQL/MariaDB dialect: XEP-0045 persistent rooms and affiliations.
-- Keep in step with ../sqlite/0001_muc_rooms.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql (muc_host is a domain, room a localpart).
CREATE TABLE IF NOT EXISTS muc_rooms (
    muc_host       VARCHAR(191) NOT NULL,
    room           VARCHAR(191) NOT NULL,
    config         LONGTEXT NOT NULL,
    subject        TEXT NOT NULL,
    subject_author TEXT NOT NULL,
    PRIMARY KEY (muc_host, room)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS muc_affiliations (
    muc_host    VARCHAR(191) NOT NULL,
    room        VARCHAR(191) NOT NULL,
    jid         VARCHAR(384) NOT NULL,
    affiliation VARCHAR(16) NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (muc_host, room, jid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
