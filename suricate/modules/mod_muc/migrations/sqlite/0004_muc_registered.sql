-- mod_muc version 4, SQLite dialect: nicks registered with a room (XEP-0045 §7.10), reserved
-- for their owner. Keep in step with ../pgsql/0004_muc_registered.sql. (Numbered 4, not 2:
-- migrations of features developed side by side may land in either order.)
CREATE TABLE muc_registered (
    muc_host TEXT NOT NULL,
    room     TEXT NOT NULL,
    jid      TEXT NOT NULL,      -- bare JID of the owner
    nick     TEXT NOT NULL,      -- resourceprep'd
    PRIMARY KEY (muc_host, room, jid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX i_muc_registered_nick ON muc_registered (muc_host, room, nick);
