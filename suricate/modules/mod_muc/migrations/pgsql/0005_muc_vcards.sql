-- mod_muc version 5, PostgreSQL dialect: room vCards (XEP-0486 MUC Avatars over XEP-0054).
-- Keep in step with ../sqlite/0005_muc_vcards.sql.
CREATE TABLE muc_vcards (
    muc_host TEXT COLLATE "C" NOT NULL,
    room     TEXT COLLATE "C" NOT NULL,
    vcard    TEXT NOT NULL,
    PRIMARY KEY (muc_host, room)
);
