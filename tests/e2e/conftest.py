from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from tests.e2e.harness import running_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as srv:
        yield srv
