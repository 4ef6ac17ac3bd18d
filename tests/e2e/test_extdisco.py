"""mod_extdisco (XEP-0215) with real clients: the configured STUN/TURN services, all or by type,
credentials for one service, the errors of §3.3, and the feature in the server's disco#info."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.jid import JID
from tests.e2e.harness import MODULES_TOML, Client, connect, disconnect, running_server

NS = "urn:xmpp:extdisco:2"
SERVICES = MODULES_TOML + """
[modules.mod_extdisco]
  [[modules.mod_extdisco.service]]
    type = "stun"
    host = "stun.localhost"
    port = 3478
    transport = "udp"
  [[modules.mod_extdisco.service]]
    type = "turn"
    host = "turn.localhost"
    port = 3478
    transport = "udp"
    username = "calls"
    password = "s3cret"
  [[modules.mod_extdisco.service]]
    type = "turn"
    host = "turn.localhost"
    port = 5349
    transport = "tcp"
    username = "calls"
    password = "s3cret"
"""


async def ask(client: Client, payload: str) -> Any:
    iq = client.make_iq_get(ito="localhost")
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


def services(result: Any, name: str) -> list[dict[str, str]]:
    element = result.xml.find(f"{{{NS}}}{name}")
    assert element is not None
    return [dict(s.attrib) for s in element.findall(f"{{{NS}}}service")]


@pytest.fixture
async def alice(tmp_path: Path) -> Any:
    async with running_server(tmp_path, modules=SERVICES) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        client = await connect(server, "alice@localhost/phone", "alice-pw",
                               plugins=("xep_0030",))
        yield client
        await disconnect(client)


async def test_all_services_and_by_type(alice: Client) -> None:
    # §3.1: every service, with the configured static credentials as they are.
    listed = services(await ask(alice, f"<services xmlns='{NS}'/>"), "services")
    assert listed == [
        {"type": "stun", "host": "stun.localhost", "port": "3478", "transport": "udp"},
        {"type": "turn", "host": "turn.localhost", "port": "3478", "transport": "udp",
         "username": "calls", "password": "s3cret"},
        {"type": "turn", "host": "turn.localhost", "port": "5349", "transport": "tcp",
         "username": "calls", "password": "s3cret"},
    ]
    # §3.2: one type, echoed on <services/>.
    result = await ask(alice, f"<services xmlns='{NS}' type='stun'/>")
    assert result.xml.find(f"{{{NS}}}services").get("type") == "stun"
    assert [s["host"] for s in services(result, "services")] == ["stun.localhost"]
    none = await ask(alice, f"<services xmlns='{NS}' type='ftp'/>")
    assert services(none, "services") == []
    # §5: announced in the server's disco#info.
    info = await alice.plugin["xep_0030"].get_info(jid="localhost")
    assert NS in info["disco_info"]["features"]


async def test_credentials(alice: Client) -> None:
    # §3.3: host and type name the service; both ports of turn.localhost match.
    result = await ask(alice, f"<credentials xmlns='{NS}'><service host='turn.localhost' "
                              "type='turn'/></credentials>")
    found = services(result, "credentials")
    assert [(s["port"], s["username"], s["password"]) for s in found] == [
        ("3478", "calls", "s3cret"), ("5349", "calls", "s3cret")]
    # port picks one of them
    result = await ask(alice, f"<credentials xmlns='{NS}'><service host='turn.localhost' "
                              "type='turn' port='5349'/></credentials>")
    assert [s["transport"] for s in services(result, "credentials")] == ["tcp"]


@pytest.mark.parametrize(("payload", "condition"), [
    (f"<credentials xmlns='{NS}'><service host='turn.elsewhere' type='turn'/></credentials>",
     "item-not-found"),
    (f"<credentials xmlns='{NS}'><service host='stun.localhost' type='turn'/></credentials>",
     "item-not-found"),
    (f"<credentials xmlns='{NS}'><service host='turn.localhost'/></credentials>",
     "bad-request"),
    (f"<credentials xmlns='{NS}'/>", "bad-request"),
    (f"<other xmlns='{NS}'/>", "bad-request"),
])
async def test_errors(alice: Client, payload: str, condition: str) -> None:
    with pytest.raises(IqError) as err:
        await ask(alice, payload)
    assert err.value.iq["error"]["condition"] == condition


async def test_set_is_not_allowed(alice: Client) -> None:
    iq = alice.make_iq_set(ito="localhost")
    iq.append(ET.fromstring(f"<services xmlns='{NS}'/>"))
    with pytest.raises(IqError) as err:
        await iq.send(timeout=5)
    assert err.value.iq["error"]["condition"] == "not-allowed"


async def test_without_the_module_nobody_answers(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        with pytest.raises(IqError) as err:
            await ask(alice, f"<services xmlns='{NS}'/>")
        assert err.value.iq["error"]["condition"] == "service-unavailable"
        await disconnect(alice)
