-- mod_muc version 5, SQLite dialect: room vCards (XEP-0486 MUC Avatars over XEP-0054), one
-- per persistent room that has one. Apart from muc_rooms: the service's disco#items reads
-- every room's configuration, and a vCard with its photo is up to 64 KiB. Keep in step with
-- ../pgsql/0005_muc_vcards.sql. (Numbered 5: 2 and 3 may be taken by branches in flight.)
CREATE TABLE muc_vcards (
    muc_host TEXT NOT NULL,
    room     TEXT NOT NULL,
    vcard    TEXT NOT NULL,      -- the serialized <vCard xmlns='vcard-temp'/>
    PRIMARY KEY (muc_host, room)
) WITHOUT ROWID;
