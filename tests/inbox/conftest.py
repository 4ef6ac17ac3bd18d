from __future__ import annotations

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


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=MODULES_TOML + INBOX_TOML) as srv:
        for user in ("alice", "bob", "carol", "dave"):
            await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
        yield srv


# The storage suite's fixtures: every store test runs on SQLite and on PostgreSQL.
from tests.storage.conftest import backend, make_storage, pg_database, storage  # noqa: E402,F401
