-- mod_roster version 2, SQLite dialect: `hidden` marks the record kept only for a contact's
-- pending subscription request (RFC 6121 §3.1.3) when the user has no roster item for the
-- contact: such a record is not part of the roster the user sees. Before, that was guessed
-- from the state (none + pending in, no name, no group), which also hid an item the user had
-- added without a name or group as soon as the contact asked to subscribe.
-- Keep in step with ../pgsql/0002_roster_hidden.sql. The rows are marked by 0003.

ALTER TABLE roster_items ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1));
