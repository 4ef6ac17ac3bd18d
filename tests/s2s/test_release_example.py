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
from tests.unit.test_config import RELEASE_EXAMPLE  # the text of the release notes

# Shares a fixed resource with other files: one xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("fixed-ports")


def _config(tmp: Path) -> str:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    example = RELEASE_EXAMPLE.replace("priv/ssl/cert.pem", cert.certfile).replace(
        "priv/ssl/key.pem", cert.keyfile)
    assert example != RELEASE_EXAMPLE  # the paths were there to replace
    return f"""{example}
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp / 'suricate.db'}"
"""


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
