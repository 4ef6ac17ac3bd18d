"""XEP-0363 from the built-in web client: Converse.js in chromium uploads a picture to the disk
backend (HTTPS, another origin than /chat: a CORS preflight), shows it in the chat, and a
slixmpp recipient gets the link and downloads the same bytes with the picture's type.

Skipped as tests/web/test_conversejs.py is when chromium or the npm packages are missing."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import connect, disconnect, free_port
from tests.web.conftest import web_server
from tests.web.test_conversejs import _MISSING, CHAT, PEP, WEBCLIENT

pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x20\x80\xe0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_converse_uploads_a_picture_that_the_recipient_downloads(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path / "upload-certs", ["localhost"])
    port = free_port()
    upload = f"""
[[listen.http]]
port = {port}
ip_address = "127.0.0.1"
tls.certfile = "{cert.certfile}"
tls.keyfile = "{cert.keyfile}"
tls.verify_mode = "none"

[[listen.http.handlers.mod_http_upload]]
host = "_"
path = "/upload"
"""
    modules = (
        PEP
        + f"""
[modules.mod_http_upload]
backend = "disk"
disk.directory = "files"
disk.base_url = "https://localhost:{port}/upload"
"""
    )
    picture = tmp_path / "sunset.png"
    picture.write_bytes(_png(40, 30))
    async with web_server(tmp_path, extra=upload, handlers=CHAT, modules_extra=modules) as server:
        bob = await connect(server, "bob@localhost/c2s", "secret")
        bob.send_presence()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(Path(__file__).with_name("conversejs_upload.mjs")),
            str(WEBCLIENT / "playwright-core"),
            f"http://localhost:{server.http_port}/chat",  # type: ignore[attr-defined]
            "alice@localhost",
            "secret",
            "bob@localhost",
            str(picture),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        received = [m for m in list(bob.messages._queue) if m["body"]]  # type: ignore[attr-defined]
        await disconnect(bob)
        assert out, err.decode()[-2000:]
        r: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        assert "error" not in r, r
        url = r["src"]
        assert url.startswith(f"https://localhost:{port}/upload/") and url.endswith("/sunset.png")
        assert r["width"] == 40  # the page decoded the picture it got back
        assert r["requests"][0] == "PUT 201", r["requests"]
        # bob's message: the URL as body and as XEP-0066 out-of-band data, as Converse sends it
        assert [m["body"] for m in received] == [url]
        assert received[0].xml.findtext("{jabber:x:oob}x/{jabber:x:oob}url") == url
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http,
            http.get(url) as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/png"
            assert await response.read() == picture.read_bytes()
