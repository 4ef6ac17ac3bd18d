"""OMEMO (XEP-0384) tests: one Suricate per test module running the embedded default, and
the accounts' rosters. The OMEMO devices (slixmpp-omemo) are in devices.py, which a test
module imports after checking that the library is there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from suricate.core.defaults import default_config_toml
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_roster.store import RosterItem
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import free_port, serving

OLD = "eu.siacs.conversations.axolotl"
TWO = "urn:xmpp:omemo:2"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """The embedded default (``suricate serve`` without a configuration) on free ports."""
    tmp: Path = tmp_path_factory.mktemp("omemo")
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"],
                                 services=("conference", "pubsub", "upload"))
    ports = {"c2s_port": free_port(), "tls_port": free_port()}
    toml = default_config_toml(cert.certfile, cert.keyfile, str(tmp / "suricate.db"),
                               c2s_port=ports["c2s_port"], tls_port=ports["tls_port"],
                               http_port=free_port(), https_port=free_port())
    async with serving(tmp, toml, **ports) as srv:
        yield srv


async def accounts(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def friends(server: Server, a: str, b: str) -> None:
    """A mutual presence subscription, written before either logs in."""
    roster = server.modules["mod_roster"].store
    await roster.put_roster_item("localhost", a, RosterItem(f"{b}@localhost", subscription="both"))
    await roster.put_roster_item("localhost", b, RosterItem(f"{a}@localhost", subscription="both"))
