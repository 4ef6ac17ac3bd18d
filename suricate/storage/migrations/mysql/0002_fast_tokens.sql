-- Suricate schema version 2: formerly the XEP-0484 FAST token table, which belongs to
-- mod_fast_auth_token. The number stays, as a statement that changes nothing, so that every
-- dialect records the same core versions.
SELECT 1;
