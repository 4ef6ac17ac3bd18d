from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, running_server

INBOX_TOML = """
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_inbox]
boxes = ["work"]
groupchat = ["muc"]
max_result_limit = 10
[modules.mod_smart_markers]
"""


@pytest.fixture(params=["sqlite", pytest.param("pgsql", marks=pytest.mark.postgres)])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """A server with the inbox on SQLite, then on PostgreSQL (its own database; skipped
    without PostgreSQL, except under CI=true)."""
    pool = ""
    name = f"suricate_inbox_{secrets.token_hex(5)}"
    if request.param == "pgsql":
        await pg_admin_or_skip(f'CREATE DATABASE "{name}"')
        pool = ("[outgoing_pools.rdbms.default]\nworkers = 4\n"
                "[outgoing_pools.rdbms.default.connection]\ndriver = \"pgsql\"\n"
                f'host = "127.0.0.1"\ndatabase = "{name}"\nusername = "postgres"\n'
                'password = ""\n')
    try:
        async with running_server(tmp_path, modules=MODULES_TOML + INBOX_TOML
                                  + "[modules.mod_privacy]\n",
                                  pool_toml=pool) as srv:
            for user in ("alice", "bob", "carol", "dave"):
                await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
            yield srv
    finally:
        if request.param == "pgsql":
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The storage suite's fixtures: every store test runs on SQLite and on PostgreSQL.
from tests.storage.conftest import (  # noqa: E402,F401
    backend,
    make_storage,
    pg_admin,
    pg_admin_or_skip,
    pg_database,
    storage,
)
