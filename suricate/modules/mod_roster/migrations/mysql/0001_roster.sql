-- mod_roster version 1, MySQL/MariaDB dialect: RFC 6121 rosters, groups and versions.
-- Keep in step with ../sqlite/0001_roster.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql. A group row's key is 191 + 191 + 256
-- (the contact's bare JID) + 128 (the group name) characters.
CREATE TABLE IF NOT EXISTS roster_items (
    server       VARCHAR(191) NOT NULL,
    username     VARCHAR(191) NOT NULL,
    jid          VARCHAR(256) NOT NULL,
    name         TEXT,
    subscription VARCHAR(4) NOT NULL DEFAULT 'none'
                 CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask          VARCHAR(4) NOT NULL DEFAULT 'none' CHECK (ask IN ('none', 'out', 'in', 'both')),
    approved     BOOLEAN NOT NULL DEFAULT FALSE,
    ask_message  TEXT,
    PRIMARY KEY (server, username, jid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS roster_groups (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    jid      VARCHAR(256) NOT NULL,
    position INTEGER NOT NULL,
    grp      VARCHAR(128) NOT NULL,
    PRIMARY KEY (server, username, jid, grp),
    FOREIGN KEY (server, username, jid)
        REFERENCES roster_items (server, username, jid) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS roster_versions (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    version  TEXT NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
