-- mod_event_pusher version 1, SQLite dialect: XEP-0357 push registrations.
-- Keep in step with ../pgsql/0001_push_registrations.sql.
-- One row per (account, app server, node) the account enabled (XEP-0357 §5); `form` is the
-- serialized publish-options data form sent with every notification, '' when none.
CREATE TABLE IF NOT EXISTS push_registrations (
    server     TEXT NOT NULL,
    username   TEXT NOT NULL,
    service    TEXT NOT NULL,
    node       TEXT NOT NULL,
    form       TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (server, username, service, node)
) WITHOUT ROWID;
