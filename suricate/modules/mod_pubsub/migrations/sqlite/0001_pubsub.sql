-- mod_pubsub version 1, SQLite dialect. Keep in step with ../pgsql/0001_pubsub.sql.
-- A node lives on a host: (server, username) is the account for PEP (XEP-0163), so the rows
-- go with the account, and (service domain, '') for the pubsub service (XEP-0060).
CREATE TABLE pubsub_nodes (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    node     TEXT NOT NULL,
    config   TEXT NOT NULL,
    PRIMARY KEY (server, username, node)
) WITHOUT ROWID;

CREATE TABLE pubsub_items (
    server       TEXT NOT NULL,
    username     TEXT NOT NULL,
    node         TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    publisher    TEXT NOT NULL,
    payload      TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (server, username, node, item_id)
) WITHOUT ROWID;
CREATE INDEX pubsub_items_order ON pubsub_items (server, username, node, published_at);

CREATE TABLE pubsub_affiliations (
    server      TEXT NOT NULL,
    username    TEXT NOT NULL,
    node        TEXT NOT NULL,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (server, username, node, jid)
) WITHOUT ROWID;

CREATE TABLE pubsub_subscriptions (
    server   TEXT NOT NULL,
    username TEXT NOT NULL,
    node     TEXT NOT NULL,
    jid      TEXT NOT NULL,
    subid    TEXT NOT NULL,
    state    TEXT NOT NULL,
    PRIMARY KEY (server, username, node, jid, subid)
) WITHOUT ROWID;
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (jid);
