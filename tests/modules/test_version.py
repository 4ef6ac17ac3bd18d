"""mod_version: XEP-0092 Software Version."""

from __future__ import annotations

from pathlib import Path

import suricate
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server


async def test_version_without_os(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_version]") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        reply = await alice.iq("get", Element("query", ns.VERSION), to="localhost")
        query = reply.find("query", ns.VERSION)
        assert query is not None
        assert query.find_text("name") == "Suricate"
        assert query.find_text("version") == suricate.__version__
        assert query.find("os") is None


async def test_version_with_os_info(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_version]\nos_info = true") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        reply = await alice.iq("get", Element("query", ns.VERSION), to="localhost")
        query = reply.find("query", ns.VERSION)
        assert query is not None and query.find_text("os")


async def test_version_set_is_not_allowed(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_version]") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        reply = await alice.iq("set", Element("query", ns.VERSION), to="localhost")
        assert error_condition(reply) == "not-allowed"
