"""mod_sic (XEP-0279) with real clients: the address and port the server sees, over STARTTLS,
direct TLS, behind the PROXY protocol and over WebSocket; another account's address is
refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slixmpp.exceptions import IqError

from suricate.jid import JID
from suricate.net.proxy_protocol import v1_header
from tests.e2e.harness import MODULES_TOML, Client, connect, disconnect, running_server
from tests.robustness.conftest import Client as RawLogin
from tests.robustness.conftest import limited_server
from tests.web.conftest import web_server
from tests.web.test_websocket import login, ws_url

SIC = "urn:xmpp:sic:1"
WITH_SIC = MODULES_TOML + "\n[modules.mod_sic]\n"


async def ask(client: Client, to: str | None = None) -> tuple[str | None, str | None]:
    iq = client.make_iq_get(ito=to)
    iq.append(ET.Element(f"{{{SIC}}}address"))
    result: Any = await iq.send(timeout=5)
    address = result.xml.find(f"{{{SIC}}}address")
    assert address is not None
    return address.findtext(f"{{{SIC}}}ip"), address.findtext(f"{{{SIC}}}port")


def source_port(client: Client) -> int:
    sockname = client.transport.get_extra_info("sockname")
    return int(sockname[1])


@pytest.mark.parametrize("direct_tls", [False, True])
async def test_the_client_learns_its_address_and_port(tmp_path: Path, direct_tls: bool) -> None:
    async with running_server(tmp_path, modules=WITH_SIC) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        await server.auth.register(JID.parse("bob@localhost"), "bob-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw", direct_tls=direct_tls,
                              plugins=("xep_0030",))
        port = str(source_port(alice))
        # XEP-0279 §2: no 'to' (the account itself), and to the server.
        assert await ask(alice) == ("127.0.0.1", port)
        assert await ask(alice, "localhost") == ("127.0.0.1", port)
        # §3: the server advertises it.
        info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        assert SIC in info["disco_info"]["features"]
        # Another account's address is not for alice to know.
        with pytest.raises(IqError) as err:
            await ask(alice, "bob@localhost")
        assert err.value.iq["error"]["condition"] == "forbidden"
        await disconnect(alice)


async def test_behind_the_proxy_protocol_the_real_client_address(tmp_path: Path) -> None:
    async with limited_server(tmp_path, listener="proxy_protocol = true",
                              extra="[modules.mod_sic]") as server:
        header = v1_header(("203.0.113.7", 51000), ("198.51.100.1", 5222))
        client = await RawLogin.plain(server.plain_port,  # type: ignore[attr-defined]
                                      preamble=header)
        await client.login("alice")
        await client.send(f"<iq type='get' id='sic1'><address xmlns='{SIC}'/></iq>")
        answer = await client.expect(r"<iq [^>]*id=.sic1.*?</iq>")
        assert "type=\"result\"" in answer or "type='result'" in answer
        assert "<ip>203.0.113.7</ip>" in answer and "<port>51000</port>" in answer
        # set is not defined by §2
        await client.send(f"<iq type='set' id='sic2'><address xmlns='{SIC}'/></iq>")
        assert "not-allowed" in await client.expect(r"<iq [^>]*id=.sic2.*?</iq>")
        await client.close()


async def test_without_the_module_nobody_answers(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        await server.auth.register(JID.parse("alice@localhost"), "alice-pw")
        alice = await connect(server, "alice@localhost/phone", "alice-pw")
        with pytest.raises(IqError) as err:
            await ask(alice)
        assert err.value.iq["error"]["condition"] == "service-unavailable"
        await disconnect(alice)


async def test_over_websocket_the_peer_of_the_http_connection(tmp_path: Path) -> None:
    # The WebSocket session's address is that of the HTTP connection it was opened on.
    async with web_server(tmp_path, modules_extra="[modules.mod_sic]") as server, \
            aiohttp.ClientSession() as http, \
            http.ws_connect(ws_url(server), protocols=("xmpp",)) as ws:
        await login(ws)
        port = ws.get_extra_info("sockname")[1]
        await ws.send_str(f"<iq xmlns='jabber:client' type='get' id='sic1'>"
                          f"<address xmlns='{SIC}'/></iq>")
        answer = await ws.receive_str(timeout=5)
        assert "type='result'" in answer or 'type="result"' in answer, answer
        assert "<ip>127.0.0.1</ip>" in answer and f"<port>{port}</port>" in answer, answer
