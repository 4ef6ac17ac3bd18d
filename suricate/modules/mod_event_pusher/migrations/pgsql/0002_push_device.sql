-- mod_event_pusher version 2, PostgreSQL dialect. Keep in step with ../sqlite/0002_push_device.sql.
-- The device behind each registration: the resource of the session that enabled it ('' when
-- unknown: rows enabled before this version). A message queued for one device wakes that
-- device's registrations only, and a stored one spares the devices that are connected, after a
-- restart as before it.
ALTER TABLE push_registrations ADD COLUMN device TEXT COLLATE "C" NOT NULL DEFAULT '';
