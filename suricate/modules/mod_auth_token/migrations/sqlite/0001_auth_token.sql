-- mod_auth_token version 1, SQLite dialect: the valid sequence number of each account's
-- refresh tokens (MongooseIM's token-based reconnection). Keep in step with
-- ../pgsql/0001_auth_token.sql and ../mysql/0001_auth_token.sql.
-- A refresh token carries the sequence number current when it was issued; revoking the
-- account's tokens increments seq_no, and a token whose number is lower is refused. No token
-- is stored: tokens are signed by mod_keystore's token_secret, which is not in the database.
CREATE TABLE IF NOT EXISTS auth_token (
    server    TEXT NOT NULL,
    username  TEXT NOT NULL,
    seq_no    INTEGER NOT NULL,
    PRIMARY KEY (server, username)
) WITHOUT ROWID;
