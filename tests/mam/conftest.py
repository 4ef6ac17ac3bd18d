from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, running_server

MAM_TOML = """
[modules.mod_carboncopy]
[modules.mod_mam]
async_writer.flush_interval = 200
[modules.mod_mam.pm]
"""


def mam_modules(extra: str = "") -> str:
    return MODULES_TOML + MAM_TOML + extra


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=mam_modules()) as srv:
        for user in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        yield srv


# The storage suite's fixtures: every store test runs on SQLite, PostgreSQL and MariaDB.
from tests.storage.conftest import (  # noqa: E402,F401
    backend,
    make_storage,
    my_database,
    pg_database,
    storage,
)
