"""mod_time: XEP-0202 Entity Time."""

from __future__ import annotations

import datetime
from pathlib import Path

from suricate.modules.mod_time import entity_time
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server


def test_entity_time_is_utc_with_zero_offset() -> None:
    when = datetime.datetime(2006, 12, 19, 17, 58, 35, 123456, tzinfo=datetime.UTC)
    assert entity_time(when).serialize() == (
        '<time xmlns="urn:xmpp:time"><tzo>+00:00</tzo><utc>2006-12-19T17:58:35Z</utc></time>')


async def test_server_answers_time(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_time]") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        reply = await alice.iq("get", Element("time", ns.TIME), to="localhost")
        el = reply.find("time", ns.TIME)
        assert el is not None and el.find_text("tzo") == "+00:00"
        utc = datetime.datetime.strptime(el.find_text("utc") or "", "%Y-%m-%dT%H:%M:%SZ")
        assert utc.replace(tzinfo=datetime.UTC) >= before


async def test_time_set_is_not_allowed(tmp_path: Path) -> None:
    async with module_server(tmp_path, "[modules.mod_time]") as server:
        alice = FakeSession(server, "alice@localhost/phone")
        reply = await alice.iq("set", Element("time", ns.TIME), to="localhost")
        assert error_condition(reply) == "not-allowed"
