-- mod_mam's MUC archive (store "mod_mam_muc"), version 1, PostgreSQL dialect. Keep in step
-- with ../sqlite/0001_mam_muc.sql. One row per groupchat message per room (XEP-0313 on the
-- room JID): the id is the room's XEP-0359 stanza-id, microseconds << 8 | node (DESIGN §7),
-- so paging is a range scan of (server, room, id).
CREATE TABLE mam_muc_message (
    server      TEXT COLLATE "C" NOT NULL,  -- the MUC service domain
    room        TEXT COLLATE "C" NOT NULL,  -- the room's local part
    id          BIGINT PRIMARY KEY,
    sender_jid  TEXT COLLATE "C" NOT NULL,  -- the sender's real bare JID
    nick        TEXT COLLATE "C" NOT NULL,  -- the sender's nick: `with` = room@service/nick
    origin_id   TEXT COLLATE "C",           -- XEP-0359 origin-id (or the message id)
    search_body TEXT,                       -- normalized body, when full_text_search is on
    message     TEXT NOT NULL               -- the groupchat message as the occupants got it
);
CREATE INDEX i_mam_muc_message_room ON mam_muc_message (server, room, id);
CREATE INDEX i_mam_muc_message_nick ON mam_muc_message (server, room, nick, id);
