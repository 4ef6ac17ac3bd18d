-- mod_vcard version 2, SQLite dialect: the XEP-0055 user directory of the rdbms backend:
-- each vCard's searchable fields, as written and lower-cased (suricate/modules/mod_vcard/search.py).
-- Keep in step with ../pgsql/0002_vcard_search.sql. Existing vCards are indexed at start.
CREATE TABLE IF NOT EXISTS vcard_search (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    fn        TEXT NOT NULL DEFAULT '',
    lfn       TEXT NOT NULL DEFAULT '',
    family    TEXT NOT NULL DEFAULT '',
    lfamily   TEXT NOT NULL DEFAULT '',
    given     TEXT NOT NULL DEFAULT '',
    lgiven    TEXT NOT NULL DEFAULT '',
    middle    TEXT NOT NULL DEFAULT '',
    lmiddle   TEXT NOT NULL DEFAULT '',
    nickname  TEXT NOT NULL DEFAULT '',
    lnickname TEXT NOT NULL DEFAULT '',
    bday      TEXT NOT NULL DEFAULT '',
    lbday     TEXT NOT NULL DEFAULT '',
    ctry      TEXT NOT NULL DEFAULT '',
    lctry     TEXT NOT NULL DEFAULT '',
    locality  TEXT NOT NULL DEFAULT '',
    llocality TEXT NOT NULL DEFAULT '',
    email     TEXT NOT NULL DEFAULT '',
    lemail    TEXT NOT NULL DEFAULT '',
    orgname   TEXT NOT NULL DEFAULT '',
    lorgname  TEXT NOT NULL DEFAULT '',
    orgunit   TEXT NOT NULL DEFAULT '',
    lorgunit  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (server, username)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS i_vcard_search_lfn ON vcard_search (server, lfn);
CREATE INDEX IF NOT EXISTS i_vcard_search_lfamily ON vcard_search (server, lfamily);
CREATE INDEX IF NOT EXISTS i_vcard_search_lgiven ON vcard_search (server, lgiven);
CREATE INDEX IF NOT EXISTS i_vcard_search_lnickname ON vcard_search (server, lnickname);
CREATE INDEX IF NOT EXISTS i_vcard_search_lemail ON vcard_search (server, lemail);
