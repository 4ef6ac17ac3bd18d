-- Suricate schema version 2: formerly the XEP-0484 FAST token table, which now belongs to
-- mod_fast_auth_token (suricate/modules/mod_fast_auth_token/migrations/, CREATE TABLE IF NOT
-- EXISTS with the same DDL, so databases that ran the old version 2 keep their tokens).
-- The number stays, as a statement that changes nothing, so that old and new databases
-- record the same core versions.
SELECT 1;
