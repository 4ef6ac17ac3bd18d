-- mod_pubsub version 1, MySQL/MariaDB dialect: XEP-0060 nodes, items, affiliations and
-- subscriptions (PEP and pubsub services). Keep in step with ../sqlite/0001_pubsub.sql;
-- conventions in suricate/storage/migrations/mysql/0001_initial.sql. The 386 characters a
-- key has after (server, username) are shared as: node 192, then item_id 192, or an
-- affiliated jid 192, or a subscriber jid 160 and its subid 32 (ours are short hex ids).
CREATE TABLE IF NOT EXISTS pubsub_nodes (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    node     VARCHAR(192) NOT NULL,
    config   LONGTEXT NOT NULL,
    PRIMARY KEY (server, username, node)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS pubsub_items (
    server       VARCHAR(191) NOT NULL,
    username     VARCHAR(191) NOT NULL,
    node         VARCHAR(192) NOT NULL,
    item_id      VARCHAR(192) NOT NULL,
    publisher    TEXT NOT NULL,
    payload      LONGTEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (server, username, node, item_id),
    INDEX pubsub_items_order (server, username, node, published_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS pubsub_affiliations (
    server      VARCHAR(191) NOT NULL,
    username    VARCHAR(191) NOT NULL,
    node        VARCHAR(192) NOT NULL,
    jid         VARCHAR(192) NOT NULL,
    affiliation VARCHAR(16) NOT NULL,
    PRIMARY KEY (server, username, node, jid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS pubsub_subscriptions (
    server   VARCHAR(191) NOT NULL,
    username VARCHAR(191) NOT NULL,
    node     VARCHAR(192) NOT NULL,
    jid      VARCHAR(160) NOT NULL,
    subid    VARCHAR(32) NOT NULL,
    state    VARCHAR(16) NOT NULL,
    PRIMARY KEY (server, username, node, jid, subid),
    INDEX pubsub_subscriptions_jid (jid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
