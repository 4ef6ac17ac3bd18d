-- mod_event_pusher version 2, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0002_push_device.sql. The device behind each registration: the resource of the
-- session that enabled it ('' when unknown: rows enabled before this version). A resource is
-- up to 1023 bytes (RFC 7622 §3.4): TEXT, not in any key. One ALTER: atomic, so safe to run
-- again after a failure. A TEXT default must be an expression in MySQL 8.
ALTER TABLE push_registrations ADD COLUMN device TEXT NOT NULL DEFAULT ('');
