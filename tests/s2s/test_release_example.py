"""The S2S and component example of the MongooseIM 6.4 release notes runs as written (only
its certificate paths replaced)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from suricate.net.certs import ensure_self_signed

EXAMPLE = """
[[listen.component]]
port = 8190
shaper = "fast"
ip_address = "127.0.0.1"
password = "secret"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"
[[listen.s2s]]
port = 5269
shaper = "fast"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"
[s2s]
default_policy = "allow"
[s2s.outgoing]
port = 5269
shaper = "fast"
tls.certfile = "priv/ssl/cert.pem"
tls.keyfile = "priv/ssl/key.pem"
"""


def _config(tmp: Path) -> str:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    body = EXAMPLE.replace("priv/ssl/cert.pem", cert.certfile).replace(
        "priv/ssl/key.pem", cert.keyfile)
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp / 'suricate.db'}"
{body}"""


def test_the_example_validates(tmp_path: Path) -> None:
    cfg = parse_config(_config(tmp_path), tmp_path)
    assert cfg["listen"]["component"][0]["tls"]["mode"] == "tls"
    assert cfg["listen"]["s2s"][0]["port"] == 5269
    assert cfg["s2s"]["outgoing"]["tls"]["certfile"].endswith("server.crt")


async def test_the_example_runs(tmp_path: Path) -> None:
    server = Server(parse_config(_config(tmp_path), tmp_path), tmp_path, MODULES)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        if exc.errno == errno.EADDRINUSE:
            pytest.skip(f"port 5269 or 8190 is taken by another program here: {exc}")
        raise
    try:
        kinds = sorted(listener.kind for listener in server.listeners)
        assert kinds == ["component", "s2s"]
        assert server.s2s.tls_client.has_certificate
    finally:
        await server.stop()
