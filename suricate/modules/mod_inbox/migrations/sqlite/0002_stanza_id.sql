-- mod_inbox version 2, SQLite dialect. Keep in step with ../pgsql/0002_stanza_id.sql.
-- The XEP-0359 stanza-id of the last message as the account knows it (given by the room for a
-- room's message, by the account's own archive for a chat message; '' when there is none): a
-- XEP-0333 marker naming it reads the conversation as one naming msg_id does.
ALTER TABLE inbox ADD COLUMN stanza_id TEXT NOT NULL DEFAULT '';
