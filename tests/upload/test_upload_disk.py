"""XEP-0363 with Suricate's own disk backend: slixmpp's xep_0363 uploads over HTTPS to the
server's HTTP listener and another user downloads the same bytes; every tampered request is
refused with the right status and writes nothing outside the storage folder."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import slixmpp
from slixmpp.plugins.xep_0363 import http_upload

from tests.e2e.harness import connect, disconnect, free_port, running_server
from tests.mobile.conftest import add_user, make_test_ca, modules_toml


def _config(tmp: Path, port: int) -> tuple[str, str]:
    certs = tmp / "certs"
    listener = f"""
[[listen.http]]
port = {port}
ip_address = "127.0.0.1"
tls.certfile = "{certs / 'server.crt'}"
tls.keyfile = "{certs / 'server.key'}"

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"
"""
    modules = modules_toml(f"""
[modules.mod_http_upload]
backend = "disk"
max_file_size = 100000
disk.directory = "files"
disk.base_url = "https://localhost:{port}/upload"
""")
    return listener, modules


async def _upload_slot(client: Any, name: str, size: int, ctype: str) -> Any:
    iq = await client.plugin["xep_0363"].request_slot(
        slixmpp.JID("upload.localhost"), name, size, ctype, timeout=5)
    return iq["http_upload_slot"]


async def _raw_slot(client: Any, name: str, size: int, ctype: str | None) -> dict[str, str]:
    """A slot request written by hand (slixmpp always sends a content-type): ``ctype`` None
    leaves the attribute out."""
    from xml.etree import ElementTree as ET

    iq = client.make_iq_get(ito="upload.localhost")
    request = ET.Element("{urn:xmpp:http:upload:0}request", filename=name, size=str(size))
    if ctype is not None:
        request.set("content-type", ctype)
    iq.append(request)
    result = await iq.send(timeout=5)
    slot = result.xml.find("{urn:xmpp:http:upload:0}slot")
    return {"put": slot.find("{urn:xmpp:http:upload:0}put").get("url"),
            "get": slot.find("{urn:xmpp:http:upload:0}get").get("url")}


def trust(monkeypatch: pytest.MonkeyPatch, ca: Path) -> None:
    """HTTP clients (ours and slixmpp's) that trust the test CA and nothing else."""
    context = ssl.create_default_context(cafile=str(ca))
    real = aiohttp.ClientSession

    def session(**kwargs: Any) -> aiohttp.ClientSession:
        return real(connector=aiohttp.TCPConnector(ssl=context), **kwargs)

    monkeypatch.setattr(http_upload, "ClientSession", session)
    monkeypatch.setattr(aiohttp, "ClientSession", session)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def test_disk_upload_and_download_over_https(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = make_test_ca(tmp_path / "certs")
    trust(monkeypatch, ca)
    port = free_port()
    listener, modules = _config(tmp_path, port)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        await add_user(server, "bob")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            data = bytes(range(256)) * 100
            url = await alice.plugin["xep_0363"].upload_file(
                "holiday.png", size=len(data), content_type="image/png",
                input_file=io.BytesIO(data), timeout=10)
            assert url.startswith(f"https://localhost:{port}/upload/")
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/png"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert await response.read() == data
            stored = _files(tmp_path / "files")
            assert [p.name for p in stored if not p.name.startswith(".")] == ["holiday.png"]
        finally:
            await disconnect(alice)


async def test_tampered_uploads_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = make_test_ca(tmp_path / "certs")
    trust(monkeypatch, ca)
    port = free_port()
    listener, modules = _config(tmp_path, port)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            slot = await _upload_slot(alice, "../../etc/passwd", 10, "text/plain")
            put = slot["put"]["url"]
            # A slash in the name never makes a path (and a name starting with a dot is renamed).
            assert urlsplit(put).path.count("/") == 3 and urlsplit(put).path.endswith("/file")
            token_part = urlsplit(put).path.split("/")[2]
            async with aiohttp.ClientSession() as http:
                async def status(method: str, url: str, body: bytes = b"x" * 10,
                                 ctype: str = "text/plain") -> int:
                    async with http.request(method, url, data=body,
                                            headers={"Content-Type": ctype}) as r:
                        return r.status

                assert await status("PUT", put, b"x" * 11) == 413  # not the slot's size
                assert await status("PUT", put, ctype="text/html") == 403  # not its type
                assert await status("PUT", put.replace("?v=", "?v=1")) == 403  # bad proof
                base = f"https://localhost:{port}/upload"
                assert await status("PUT", f"{base}/{token_part}/..%2Fx?v=1.10.00") == 404
                assert await status("PUT", f"{base}/%2E%2E/x?v=1.10.00") == 404
                assert await status("GET", f"{base}/{token_part}/nothing") == 404
                # An expired proof: the module's own signer with a time in the past.
                module = server.modules["mod_http_upload"]
                old_put, _ = module.disk.slot(token_part, "late.txt", 10, "text/plain",
                                              int(time.time()) - 1)
                assert await status("PUT", old_put) == 403
                assert await status("PUT", put) == 201
                assert await status("PUT", put) == 409  # a slot is used once
            outside = {p for p in tmp_path.rglob("*") if p.is_file()
                       and "files" not in p.parts and p.suffix == ".txt"}
            assert outside == set()
            assert not any(p.name.endswith(".part") for p in _files(tmp_path / "files"))
        finally:
            await disconnect(alice)
        await asyncio.sleep(0)


async def test_disk_backend_needs_its_section(tmp_path: Path) -> None:
    from suricate.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config('[general]\nhosts = ["localhost"]\n[modules.mod_http_upload]\n'
                     'backend = "disk"\n', tmp_path)
    assert "modules.mod_http_upload.disk: required when backend is \"disk\"" in str(err.value)
    # a token of more than 100 bytes is a folder name no file system takes (every PUT failed)
    with pytest.raises(ConfigError) as err:
        parse_config('[general]\nhosts = ["localhost"]\n[modules.mod_http_upload]\n'
                     'backend = "disk"\ntoken_bytes = 200\ndisk.base_url = "https://x/u"\n',
                     tmp_path)
    assert "modules.mod_http_upload.token_bytes: at most 100" in str(err.value)




async def test_a_slot_asked_without_a_content_type_takes_the_puts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # XEP-0363 §6: the service rejects a Content-Type that does not match one "specified
    # beforehand". Converse.js asks for a file the browser has no type for (a README) with
    # content-type='' and PUTs it with an empty Content-Type header; other clients leave the
    # attribute out and send a type on the PUT. Neither specified one: both are stored.
    ca = make_test_ca(tmp_path / "certs")
    trust(monkeypatch, ca)
    port = free_port()
    listener, modules = _config(tmp_path, port)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            async with aiohttp.ClientSession() as http:
                for announced, sent, served in (("", "", "application/octet-stream"),
                                                (None, "text/plain", "text/plain")):
                    slot = await _raw_slot(alice, "README", 5, announced)
                    async with http.put(slot["put"], data=b"hello",
                                        headers={"Content-Type": sent}) as r:
                        assert r.status == 201, await r.text()
                    async with http.get(slot["get"]) as r:
                        assert r.headers["Content-Type"] == served
                        assert await r.read() == b"hello"
                # a type asked for beforehand is still held to (§6)
                slot = await _raw_slot(alice, "notes.txt", 5, "text/plain")
                async with http.put(slot["put"], data=b"hello",
                                    headers={"Content-Type": ""}) as r:
                    assert r.status == 403
        finally:
            await disconnect(alice)


async def test_a_name_with_percent_escapes_is_stored_as_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file saved from a web page often keeps its URL's escapes in its name ("Budget%20Q3.pdf").
    # The slot's URLs percent-encode the name once (RFC 3986 §2.1: "%" itself is "%25"); the
    # listener must decode them once too, or the name it checks is not the name it signed.
    ca = make_test_ca(tmp_path / "certs")
    trust(monkeypatch, ca)
    port = free_port()
    listener, modules = _config(tmp_path, port)
    async with running_server(tmp_path, extra=listener, modules=modules) as server:
        await add_user(server, "alice")
        alice = await connect(server, "alice@localhost/a", "secret", plugins=("xep_0363",))
        try:
            async with aiohttp.ClientSession() as http:
                for name in ("Budget%20Q3.pdf", "a%2Fb.txt"):
                    slot = await _raw_slot(alice, name, 5, "application/pdf")
                    async with http.put(slot["put"], data=b"%PDF-",
                                        headers={"Content-Type": "application/pdf"}) as r:
                        assert r.status == 201, (name, r.status, await r.text())
                    async with http.get(slot["get"]) as r:
                        assert r.status == 200 and await r.read() == b"%PDF-"
            stored = {p.name for p in _files(tmp_path / "files") if not p.name.startswith(".")}
            assert stored == {"Budget%20Q3.pdf", "a%2Fb.txt"}
        finally:
            await disconnect(alice)
