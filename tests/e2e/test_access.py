"""Access rules and authentication methods from the configuration, over real connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, running_server


async def test_c2s_access_rule_denies_a_user(tmp_path: Path) -> None:
    extra = """
[acl]
banned = [{user = "mallory"}]

[access]
c2s = [{acl = "banned", value = "deny"}, {acl = "all", value = "allow"}]
"""
    async with running_server(tmp_path, extra=extra) as srv:
        await srv.auth.register(JID.parse("mallory@localhost"), "pw")
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        with pytest.raises(PermissionError):
            await connect(srv, "mallory@localhost/x", "pw", sasl_mech="SCRAM-SHA-256")
        alice = await connect(srv, "alice@localhost/x", "pw", sasl_mech="SCRAM-SHA-256")
        await disconnect(alice)


async def test_anonymous_login_when_configured(tmp_path: Path) -> None:
    extra_auth = 'methods = ["rdbms", "anonymous"]\nsasl_mechanisms = ["scram_sha256", "anonymous"]'
    async with running_server(tmp_path, auth_extra=extra_auth) as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        anon = await connect(srv, "localhost", "", sasl_mech="ANONYMOUS")
        jid = anon.boundjid
        assert jid.domain == "localhost" and jid.user
        assert await srv.user_exists(JID.parse(jid.bare))
        alice = await connect(srv, "alice@localhost/x", "pw")
        anon.send_message(mto="alice@localhost/x", mbody="from nobody", mtype="chat")
        msg = await alice.next_message()
        assert msg["body"] == "from nobody" and msg["from"].bare == jid.bare
        await disconnect(anon)
        await srv.drain()
        # the anonymous account ends with its session
        assert not await srv.user_exists(JID.parse(jid.bare))
        await disconnect(alice)


async def test_anonymous_not_offered_unless_configured(tmp_path: Path) -> None:
    async with running_server(tmp_path) as srv:
        with pytest.raises((PermissionError, ConnectionError, TimeoutError)):
            await connect(srv, "localhost", "", sasl_mech="ANONYMOUS", timeout=5)
