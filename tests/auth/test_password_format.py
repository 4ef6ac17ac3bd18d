"""``auth.password.format`` moving from "plain" to "scram" (MongooseIM 6.4's
``password.format``): accounts stored in the clear are rewritten as SCRAM records at their
next login, whatever the mechanism, and log in as before afterwards."""

from __future__ import annotations

from pathlib import Path

from suricate.core.server import Server
from suricate.jid import JID
from suricate.sasl.passwords import is_scram_record
from tests.e2e.harness import connect, disconnect, running_server


async def stored(srv: Server, name: str) -> str | None:
    """The password column of the account's row (None: a SCRAM record only)."""
    row = await srv.storage.get_user("localhost", name)
    assert row is not None
    return row.password


async def test_plain_passwords_become_scram_records_at_login(tmp_path: Path) -> None:
    plain = 'methods = ["rdbms"]\npassword.format = "plain"'
    async with running_server(tmp_path, auth_extra=plain) as srv:
        for name in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "secret")
        assert await stored(srv, "alice") == "secret"
    async with running_server(tmp_path) as srv:  # the default: scram
        a = await connect(srv, "alice@localhost/r", "secret", sasl_mech="SCRAM-SHA-256")
        b = await connect(srv, "bob@localhost/r", "secret", sasl_mech="PLAIN")
        await disconnect(a, b)
        await srv.drain()
        for name in ("alice", "bob"):
            row = await srv.storage.get_user("localhost", name)
            assert row is not None and row.password is None and is_scram_record(row.pass_details), (
                name
            )
        # carol has not logged in: still as she was, until her password is checked (the
        # path of PLAIN when other methods are chained, and of the admin API)
        assert await stored(srv, "carol") == "secret"
        assert await srv.auth.check_password(JID.parse("carol@localhost"), "secret")
        await srv.drain()
        assert await stored(srv, "carol") is None
        # and the records work with every mechanism
        a = await connect(srv, "alice@localhost/s", "secret", sasl_mech="SCRAM-SHA-1")
        b = await connect(srv, "bob@localhost/s", "secret", sasl_mech="SCRAM-SHA-512")
        await disconnect(a, b)
