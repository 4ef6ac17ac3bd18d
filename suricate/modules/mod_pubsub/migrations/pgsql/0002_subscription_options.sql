-- mod_pubsub version 2, PostgreSQL dialect. Keep in step with ../sqlite/0002_subscription_options.sql.
-- XEP-0060 §6.3: the options of each subscription (JSON of pubsub#subscribe_options values
-- that differ from the defaults).
ALTER TABLE pubsub_subscriptions ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
