-- mod_smart_markers version 2, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0002_marker_per_type.sql. One marker per (account, peer or room, thread, type), as
-- MongooseIM 6.4's smart_markers key. InnoDB keys stop at 3072 bytes: the type becomes ASCII
-- (12 bytes) and the thread 125 characters, (191 + 191 + 256 + 125) * 4 + 12 = 3064. Markers
-- of longer threads could not be kept in that key and are dropped first.
DELETE FROM smart_markers WHERE CHAR_LENGTH(thread) > 125;
ALTER TABLE smart_markers
    MODIFY thread VARCHAR(125) NOT NULL,
    MODIFY type VARCHAR(12) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (server, username, to_jid, thread, type);
