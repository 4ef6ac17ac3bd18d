-- mod_pubsub version 1, PostgreSQL dialect. Keep in step with ../sqlite/0001_pubsub.sql.
-- A node lives on a host: (server, username) is the account for PEP (XEP-0163), so the rows
-- go with the account, and (service domain, '') for the pubsub service (XEP-0060).
CREATE TABLE pubsub_nodes (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    node     TEXT COLLATE "C" NOT NULL,
    config   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, node)
);

CREATE TABLE pubsub_items (
    server       TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    node         TEXT COLLATE "C" NOT NULL,
    item_id      TEXT COLLATE "C" NOT NULL,
    publisher    TEXT COLLATE "C" NOT NULL,
    payload      TEXT COLLATE "C" NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (server, username, node, item_id)
);
CREATE INDEX pubsub_items_order ON pubsub_items (server, username, node, published_at);

CREATE TABLE pubsub_affiliations (
    server      TEXT COLLATE "C" NOT NULL,
    username    TEXT COLLATE "C" NOT NULL,
    node        TEXT COLLATE "C" NOT NULL,
    jid         TEXT COLLATE "C" NOT NULL,
    affiliation TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, node, jid)
);

CREATE TABLE pubsub_subscriptions (
    server   TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    node     TEXT COLLATE "C" NOT NULL,
    jid      TEXT COLLATE "C" NOT NULL,
    subid    TEXT COLLATE "C" NOT NULL,
    state    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (server, username, node, jid, subid)
);
CREATE INDEX pubsub_subscriptions_jid ON pubsub_subscriptions (jid);
