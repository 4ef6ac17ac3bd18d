-- mod_muc version 4, PostgreSQL dialect: nicks registered with a room (XEP-0045 §7.10),
-- reserved for their owner. Keep in step with ../sqlite/0004_muc_registered.sql.
CREATE TABLE muc_registered (
    muc_host TEXT COLLATE "C" NOT NULL,
    room     TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,  -- bare JID of the owner
    nick     TEXT COLLATE "C" NOT NULL,  -- resourceprep'd
    PRIMARY KEY (muc_host, room, jid)
);
CREATE UNIQUE INDEX i_muc_registered_nick ON muc_registered (muc_host, room, nick);
