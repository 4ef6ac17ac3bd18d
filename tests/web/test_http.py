"""The HTTP listener on aiohttp: discovery (XEP-0156), listener options that take effect, and
aiohttp kept out of start-up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.web.conftest import web_server


async def test_host_meta_lists_the_websocket_endpoint(tmp_path: Path) -> None:
    async with web_server(tmp_path) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        host = {"Host": f"localhost:{server.http_port}"}  # type: ignore[attr-defined]
        async with http.get(base + "/.well-known/host-meta", headers=host) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"  # XEP-0156 §3
            xrd = await resp.text()
        assert "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>" in xrd
        ws = f"ws://localhost:{server.http_port}/ws-xmpp"  # type: ignore[attr-defined]
        assert f"<Link rel='urn:xmpp:alt-connections:websocket' href='{ws}'/>" in xrd
        async with http.get(base + "/.well-known/host-meta.json", headers=host) as resp:
            assert resp.status == 200
            doc = json.loads(await resp.text())
        assert doc == {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": ws}]}
        # Behind a reverse proxy that ends TLS (nginx, HAProxy), the browser's page is on
        # https: a ws:// link is mixed content it may not open. The proxy says how it was
        # reached (X-Forwarded-Proto, or RFC 7239 Forwarded), and the links follow.
        for forwarded in ({"X-Forwarded-Proto": "https"},
                          {"Forwarded": 'for=192.0.2.7;proto=https;host="localhost"'}):
            proxied = {"Host": "localhost", **forwarded}
            async with http.get(base + "/.well-known/host-meta.json", headers=proxied) as resp:
                doc = json.loads(await resp.text())
            assert doc["links"][0]["href"] == "wss://localhost/ws-xmpp", forwarded
        # a Host that is no domain served here learns nothing
        async with http.get(base + "/.well-known/host-meta",
                            headers={"Host": "elsewhere.example"}) as resp:
            assert resp.status == 404


async def test_compress_and_max_connections_take_effect(tmp_path: Path) -> None:
    listener = "transport.max_connections = 1\nprotocol.compress = true\n"
    metrics = '[[listen.http.handlers.mongoose_prometheus_handler]]\nhost = "_"\npath = "/metrics"'
    async with web_server(tmp_path, listener_extra=listener, handlers=metrics,
                          extra="[instrumentation]\n[instrumentation.prometheus]\n") as server:
        base = f"http://127.0.0.1:{server.http_port}"  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics", headers={"Accept-Encoding": "gzip"}) as resp:
                assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
                assert "xmpp_element_in" in await resp.text()
            # the one connection allowed is held by this session: a second is closed
            async with aiohttp.ClientSession() as other:
                try:
                    async with other.get(base + "/.well-known/host-meta") as resp:
                        refused = False
                except aiohttp.ClientError:
                    refused = True
                assert refused


def test_no_aiohttp_until_the_first_http_connection() -> None:
    """Start-up time: aiohttp is imported only when an HTTP connection arrives."""
    code = """
import asyncio, sys, tempfile
from pathlib import Path
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from tests.e2e.harness import free_port, server_toml
from tests.web.conftest import http_toml

async def main(with_http):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        extra = http_toml(free_port()) if with_http else ""
        server = Server(parse_config(server_toml(tmp, free_port(), free_port(), extra), tmp),
                        tmp, MODULES)
        await server.start()
        await server.stop()
    return "aiohttp" in sys.modules

print(asyncio.run(main(False)), asyncio.run(main(True)))
"""
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]


async def test_https_tls_versions_take_effect(tmp_path: Path) -> None:
    import ssl

    async with web_server(tmp_path, https=True,
                          listener_extra='tls.versions = ["tlsv1.3"]') as server:
        url = f"https://127.0.0.1:{server.http_port}/.well-known/host-meta"  # type: ignore[attr-defined]

        def client(max_version: ssl.TLSVersion) -> ssl.SSLContext:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.maximum_version = max_version
            return ctx

        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=client(ssl.TLSVersion.TLSv1_3),
                                headers={"Host": "localhost"}) as resp:
                assert resp.status == 200
            try:
                async with http.get(url, ssl=client(ssl.TLSVersion.TLSv1_2)):
                    refused = False
            except aiohttp.ClientError:
                refused = True
            assert refused  # TLS 1.2 is not among the listener's versions


def test_https_verify_mode_selfsigned_peer_is_refused(tmp_path: Path) -> None:
    import pytest

    from suricate.config import ConfigError, parse_config
    from tests.e2e.harness import free_port, server_toml
    from tests.web.conftest import http_toml

    cert = tmp_path / "certs"
    toml = server_toml(tmp_path, free_port(), free_port(), http_toml(
        free_port(), listener_extra=f'tls.certfile = "{cert}/server.crt"\n'
                                    'tls.verify_mode = "selfsigned_peer"'))
    with pytest.raises(ConfigError, match=r"listen\.http\[0\]\.tls\.verify_mode"):
        parse_config(toml, tmp_path)


async def _server_header_of_raw_request(port: int, request: bytes) -> tuple[str, str]:
    """The status line and Server header of the answer to ``request``, sent as it is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    finally:
        writer.close()
    lines = head.split("\r\n")
    server = next((line.split(":", 1)[1].strip() for line in lines
                   if line.lower().startswith("server:")), "")
    return lines[0], server


async def test_http_server_name_is_the_server_header_of_every_response(tmp_path: Path) -> None:
    """general.http_server_name (6.4): documents, 404s, WebSocket upgrades and aiohttp's own
    error answers all carry it."""
    async with web_server(tmp_path, general_extra='http_server_name = "Apache"\n') as server, \
            aiohttp.ClientSession() as http:
        port = server.http_port  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{port}"
        async with http.get(base + "/.well-known/host-meta",
                            headers={"Host": f"localhost:{port}"}) as resp:
            assert resp.status == 200 and resp.headers["Server"] == "Apache"
        async with http.get(base + "/nothing-here") as resp:
            assert resp.status == 404 and resp.headers["Server"] == "Apache"
        upgrade = (b"GET /ws-xmpp HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n")
        status, name = await _server_header_of_raw_request(port, upgrade)
        assert " 101 " in status and name == "Apache"
        # A request aiohttp itself refuses (a malformed request line): 400, same name.
        status, name = await _server_header_of_raw_request(port, b"GARBAGE\r\n\r\n")
        assert " 400 " in status and name == "Apache"


async def test_without_http_server_name_aiohttp_names_itself(tmp_path: Path) -> None:
    async with web_server(tmp_path) as server, aiohttp.ClientSession() as http:
        port = server.http_port  # type: ignore[attr-defined]
        async with http.get(f"http://127.0.0.1:{port}/nothing-here") as resp:
            assert "aiohttp" in resp.headers["Server"]
