-- mod_mam version 1, MySQL/MariaDB dialect: XEP-0313 archive and preferences.
-- Keep in step with ../sqlite/0001_mam.sql; conventions in
-- suricate/storage/migrations/mysql/0001_initial.sql.
-- Measured on MariaDB 10.11 with a 100k archive (bench/mam_query.py --mysql): clustering the
-- table by PRIMARY KEY (server, username, id), MongooseIM's MySQL choice, made "page after an
-- id" reads ~10x faster but the COUNT(*) of a 'with' query ~8x slower (the optimizer then
-- counts on the clustered index, not i_mam_message_with), so the id stays the key.
-- remote_bare_jid is VARCHAR(380) so that i_mam_message_with (191 + 191 + 380 characters,
-- 4 bytes each, and the 8-byte id) stays within InnoDB's 3072-byte key.
CREATE TABLE IF NOT EXISTS mam_message (
    server          VARCHAR(191) NOT NULL,
    username        VARCHAR(191) NOT NULL,
    id              BIGINT NOT NULL PRIMARY KEY,
    remote_bare_jid VARCHAR(380) NOT NULL,
    remote_resource TEXT NOT NULL,
    direction       CHAR(1) NOT NULL,   -- 'I' incoming, 'O' outgoing
    from_jid        TEXT NOT NULL,
    origin_id       TEXT,               -- XEP-0359 origin-id (or the message id): retraction
    search_body     LONGTEXT,           -- normalized body, when full_text_search is on
    message         LONGTEXT NOT NULL,  -- the stanza as delivered
    INDEX i_mam_message_user (server, username, id),
    INDEX i_mam_message_with (server, username, remote_bare_jid, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS mam_prefs (
    server       VARCHAR(191) NOT NULL,
    username     VARCHAR(191) NOT NULL,
    default_mode VARCHAR(16) NOT NULL,
    always_jids  LONGTEXT NOT NULL,
    never_jids   LONGTEXT NOT NULL,
    PRIMARY KEY (server, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
