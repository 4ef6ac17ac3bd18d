"""The dummy method (6.4 load-test method): any password for any user, after a delay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from suricate.jid import JID
from tests.auth.common import offered, plain_outcome
from tests.e2e.harness import connect, disconnect, running_server

METHODS = 'methods = ["dummy"]'
DUMMY = """
[auth.dummy]
base_time = 200
variance = 0
"""


async def test_any_user_any_password_logs_in_with_plain_over_tls(tmp_path: Path) -> None:
    async with running_server(tmp_path, auth_extra=METHODS, extra=DUMMY) as server:
        # PLAIN only (dummy cannot give SCRAM credentials), and only once TLS is up.
        assert await offered(server) == ["PLAIN"]
        assert await offered(server, direct_tls=False) == []
        start = time.monotonic()
        a = await connect(server, "anyone@localhost/r", "whatever")
        assert time.monotonic() - start >= 0.2  # base_time is waited before answering
        b = await connect(server, "other@localhost/r", "x", direct_tls=True)
        a.send_message(mto="other@localhost/r", mbody="hi")
        msg = await b.next_message()
        assert msg["body"] == "hi"
        assert await server.auth.user_exists(JID.parse("nobody@localhost"))
        await disconnect(a, b)


def test_dummy_options_are_validated() -> None:
    from suricate.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"auth.dummy.base_time"):
        parse_config('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n[auth]\nmethods = ["dummy"]\n'
                     '[auth.dummy]\nbase_time = -1\n', Path("."))
    cfg = parse_config('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n[auth]\nmethods = ["dummy"]\n',
                       Path("."))
    assert cfg["auth"]["dummy"] == {"base_time": 50, "variance": 450}


async def test_raw_plain_succeeds(tmp_path: Path) -> None:
    async with running_server(tmp_path, auth_extra=METHODS, extra=DUMMY) as server:
        assert await plain_outcome(server, "u", "p") == "success"
