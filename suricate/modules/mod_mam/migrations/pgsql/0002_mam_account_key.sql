-- mod_mam version 2, PostgreSQL: an archive row's key is (server, username, id), as
-- MongooseIM keys its mam_message by (user_id, id).
-- Every read of the table names its archive (server and username) and pages by id, so the
-- key on id alone was a third B-tree each written row paid for, next to i_mam_message_user
-- holding the same ids: with the key on the archive, PostgreSQL spends about a sixth less
-- CPU and writes a tenth less WAL per row (docs/mam.md, "PostgreSQL's cost per row").
-- On a big archive this rebuilds one index under the table's lock: the server's start waits
-- for it (2.5 s for a million rows on the 2-core machine of docs/mam.md).
--
-- The one read that used the key on id alone was the largest id ever given, which the id
-- generator starts above (a clock set back must not put new messages before old ones):
-- it is now kept in mam_id_ceiling, raised before each batch is written.
CREATE TABLE mam_id_ceiling (id BIGINT NOT NULL);
INSERT INTO mam_id_ceiling SELECT COALESCE(MAX(id), 0) FROM mam_message;
DROP INDEX i_mam_message_user;
ALTER TABLE mam_message DROP CONSTRAINT mam_message_pkey,
    ADD CONSTRAINT mam_message_pkey PRIMARY KEY (server, username, id);
