-- mod_event_pusher version 1, PostgreSQL dialect: XEP-0357 push registrations.
-- Keep in step with ../sqlite/0001_push_registrations.sql.
-- One row per (account, app server, node) the account enabled (XEP-0357 §5); `form` is the
-- serialized publish-options data form sent with every notification, '' when none.
CREATE TABLE IF NOT EXISTS push_registrations (
    server     TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    service    TEXT COLLATE "C" NOT NULL,
    node       TEXT COLLATE "C" NOT NULL,
    form       TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (server, username, service, node)
);
