-- mod_roster version 3, MySQL/MariaDB dialect: the records the rule before 0002 hid (a contact's
-- pending request, state none + pending in, without name, group or pre-approval) are marked
-- hidden, so they stay out of the roster the user sees. A statement of its own, after the
-- ALTER of 0002 (which MySQL commits at once): running it again changes nothing.
-- Keep in step with ../sqlite/0003_roster_hidden_rows.sql.
UPDATE roster_items SET hidden = TRUE
WHERE subscription = 'none' AND ask = 'in' AND (name IS NULL OR name = '') AND NOT approved
  AND NOT EXISTS (SELECT 1 FROM roster_groups g WHERE g.server = roster_items.server
                  AND g.username = roster_items.username AND g.jid = roster_items.jid);
