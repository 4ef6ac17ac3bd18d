-- mod_pubsub version 2, MySQL/MariaDB dialect. Keep in step with
-- ../sqlite/0002_subscription_options.sql. XEP-0060 §6.3: the options of each subscription
-- (JSON of pubsub#subscribe_options values that differ from the defaults). One ALTER: atomic,
-- so safe to run again after a failure. A TEXT default must be an expression in MySQL 8.
ALTER TABLE pubsub_subscriptions ADD COLUMN options TEXT NOT NULL DEFAULT ('{}');
