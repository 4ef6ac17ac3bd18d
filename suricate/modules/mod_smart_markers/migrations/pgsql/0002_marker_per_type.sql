-- mod_smart_markers version 2, PostgreSQL dialect. Keep in step with ../sqlite/.
-- One marker per (account, peer or room, thread, type), as MongooseIM 6.4's smart_markers key:
-- a client's `received` for a newer message no longer hides its `displayed` for an older one.
ALTER TABLE smart_markers DROP CONSTRAINT smart_markers_pkey,
    ADD PRIMARY KEY (server, username, to_jid, thread, type);
