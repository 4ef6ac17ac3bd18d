"""The ldap method against a real slapd started by the test (tests/auth/slapd.py): slixmpp logs
in with the directory's passwords over TLS, the uids/filter/local_filter/dn_filter options
pick who may log in, a message to an offline directory user is kept for them, and a
directory that is down gives temporary-auth-failure, then works again when it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from suricate.auth.methods import AuthUnavailable
from suricate.jid import JID
from tests.auth.common import offered, plain_outcome
from tests.auth.slapd import ROOTDN, ROOTPW, SUFFIX, person, running_slapd
from tests.e2e.harness import connect, disconnect, running_server

pytestmark = pytest.mark.timeout(60)


def ldap_toml(port: int) -> str:
    return f"""
[auth.ldap]
base = "ou=people,{SUFFIX}"
uids = [{{attr = "uid"}}, {{attr = "mail", format = "%u@corp.example"}}]
filter = "(objectClass=inetOrgPerson)"
local_filter = {{operation = "notequal", attribute = "employeeType", values = ["disabled"]}}
dn_filter = {{filter = "(&(uid=%s)(!(description=banned@%d)))", attributes = ["uid"]}}

[outgoing_pools.ldap.default]
workers = 2
connection.servers = ["127.0.0.1"]
connection.port = {port}
connection.rootdn = "{ROOTDN}"
connection.password = "{ROOTPW}"
connection.connect_interval = 300

[outgoing_pools.ldap.bind]
connection.servers = ["127.0.0.1"]
connection.port = {port}
connection.connect_interval = 300
"""


async def test_directory_logins_filters_offline_routing_and_outage(tmp_path: Path) -> None:
    with running_slapd() as slapd:
        slapd.add(person("alice", "wonder land")
                  + person("bob", "builder")
                  # found through the second uid: mail = carol@corp.example
                  + person("c.smith", "carolpw", mail="carol@corp.example")
                  + person("dave", "davepw", employeeType="disabled")
                  + person("eve", "evepw", description="banned@localhost")
                  + person("fred*", "fredpw"))
        async with running_server(tmp_path, auth_extra='methods = ["ldap"]',
                                  extra=ldap_toml(slapd.port)) as server:
            # No SCRAM keys in a directory: PLAIN, and only once TLS is up (6.4).
            assert await offered(server) == ["PLAIN"]
            assert await offered(server, direct_tls=False) == []

            alice = await connect(server, "alice@localhost/r", "wonder land")
            with pytest.raises(PermissionError):
                await connect(server, "alice@localhost/x", "wonderland")
            # An empty password would be an anonymous bind (RFC 4513 §5.1.2) to slapd.
            assert await plain_outcome(server, "alice", "") != "success"
            assert not await server.auth.check_password(JID.parse("alice@localhost"), "")
            assert await plain_outcome(server, "carol", "carolpw") == "success"
            assert await plain_outcome(server, "nobody", "x") == "not-authorized"
            # local_filter (employeeType=disabled), dn_filter (description), and a username
            # that would be a wildcard if it were not escaped (RFC 4515 §3).
            assert await plain_outcome(server, "dave", "davepw") == "not-authorized"
            assert await plain_outcome(server, "eve", "evepw") == "not-authorized"
            assert await plain_outcome(server, "fred*", "fredpw") == "success"
            assert await plain_outcome(server, "fred", "fredpw") == "not-authorized"
            assert await server.auth.user_exists(JID.parse("bob@localhost"))
            assert not await server.auth.user_exists(JID.parse("dave@localhost"))
            assert not await server.auth.user_exists(JID.parse("ghost@localhost"))
            # Read-only: registration has nowhere to go.
            assert not server.auth.accounts_storable

            # bob exists only in the directory and is offline: the message waits for him;
            # a user the directory does not know gets the sender an error.
            errors: asyncio.Queue[Any] = asyncio.Queue()
            alice.add_event_handler("message_error", errors.put_nowait)
            alice.send_message(mto="bob@localhost", mbody="hello from alice")
            alice.send_message(mto="ghost@localhost", mbody="anyone?")
            error = await asyncio.wait_for(errors.get(), 5)
            assert error["type"] == "error" and error["from"].bare == "ghost@localhost"
            assert error["error"]["condition"] == "service-unavailable"
            bob = await connect(server, "bob@localhost/r", "builder")
            bob.send_presence()  # XEP-0160 §2: available presence releases the messages
            message = await bob.next_message()
            assert message["body"] == "hello from alice"

            # The directory goes away: temporary-auth-failure, never a login or a crash.
            slapd.stop()
            assert await plain_outcome(server, "alice", "wonder land") \
                == "temporary-auth-failure"
            assert await plain_outcome(server, "alice", "wrong") == "temporary-auth-failure"
            # Back again: once connect_interval has passed, logins work.
            slapd.start()
            await asyncio.sleep(0.4)
            assert await plain_outcome(server, "alice", "wonder land") == "success"
            assert await plain_outcome(server, "alice", "wrong") == "not-authorized"
            await disconnect(alice, bob)


async def test_ldaps_with_the_directory_certificate_checked(tmp_path: Path) -> None:
    from suricate.net.certs import ensure_self_signed

    directory, _ = ensure_self_signed(tmp_path / "ldap-certs", ["localhost"])
    stranger, _ = ensure_self_signed(tmp_path / "other-certs", ["localhost"])
    with running_slapd(tls=(directory.certfile, directory.keyfile)) as slapd:
        slapd.add(person("alice", "wonder land"))
        assert slapd.tls_port is not None

        def pools(cacertfile: Path) -> str:
            return "".join(f"""
[outgoing_pools.ldap.{tag}.connection]
servers = ["localhost"]
port = {slapd.tls_port}
tls.cacertfile = "{cacertfile}"
connect_interval = 100
""" for tag in ("default", "bind"))

        extra = f'[auth.ldap]\nbase = "ou=people,{SUFFIX}"\n'
        async with running_server(tmp_path, auth_extra='methods = ["ldap"]',
                                  extra=extra + pools(directory.certfile)) as server:
            assert await plain_outcome(server, "alice", "wonder land") == "success"
            assert await plain_outcome(server, "alice", "wonder") == "not-authorized"
        # A directory whose certificate the configured CA did not sign: no login.
        async with running_server(tmp_path, auth_extra='methods = ["ldap"]',
                                  extra=extra + pools(stranger.certfile)) as server:
            assert await plain_outcome(server, "alice", "wonder land") \
                == "temporary-auth-failure"


async def test_a_directory_that_never_answers(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that takes the connection and then says nothing (hung slapd, a firewall
    black hole): the login waits TIMEOUT, then temporary-auth-failure, and the stream lives."""
    import socket

    import suricate.auth.ldap

    monkeypatch.setattr(suricate.auth.ldap, "TIMEOUT", 1)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # the kernel completes handshakes; nobody ever reads
    port = hole.getsockname()[1]
    try:
        async with running_server(tmp_path, auth_extra='methods = ["ldap"]',
                                  extra=ldap_toml(port)) as server:
            assert await plain_outcome(server, "alice", "wonder land") \
                == "temporary-auth-failure"
            await asyncio.sleep(0.4)  # past connect_interval: the directory is asked again
            with pytest.raises(AuthUnavailable):
                await server.auth.user_exists(JID.parse("alice@localhost"))
    finally:
        hole.close()


@pytest.mark.parametrize(("methods", "listener"), [
    ('"ldap"', ""),
    # pki is enabled, but not on this listener (6.4's allowed_auth_methods): the certificate
    # alone is not enough there, the directory must know the user.
    ('"pki", "ldap"', 'allowed_auth_methods = ["ldap"]'),
], ids=["ldap", "pki-not-allowed-here"])
async def test_external_with_a_client_certificate_the_directory_knows(
        tmp_path: Path, methods: str, listener: str) -> None:
    """6.4's ldap method also takes SASL EXTERNAL: the verified certificate names the user
    (xmppAddr), an LDAP search says whether they may log in (no password, no bind)."""
    from tests.auth.test_pki import client_cert, login
    from tests.e2e.harness import MODULES_TOML, free_port, general_toml, serving
    from tests.s2s.pki import CertificateAuthority

    ca = CertificateAuthority(tmp_path / "pki")
    server_cert = ca.issue("localhost")
    alice = client_cert(ca, "alice", "Alice", ["alice@localhost"])
    zoe = client_cert(ca, "zoe", "Zoe", ["zoe@localhost"])  # not in the directory
    with running_slapd() as slapd:
        slapd.add(person("alice", "wonder land"))
        port = free_port()
        toml = f"""
{general_toml("localhost")}
[[listen.c2s]]
port = {port}
ip_address = "127.0.0.1"
tls.mode = "tls"
tls.certfile = "{server_cert.certfile}"
tls.keyfile = "{server_cert.keyfile}"
tls.verify_mode = "peer"
tls.cacertfile = "{ca.certfile}"
{listener}
[auth]
methods = [{methods}]
{ldap_toml(slapd.port)}
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp_path / 'db.sqlite'}"
{MODULES_TOML}
"""
        async with serving(tmp_path, toml, tls_port=port) as server:
            client = await login(server, "alice@localhost/cert", alice)
            assert str(client.boundjid) == "alice@localhost/cert"
            with pytest.raises((PermissionError, ConnectionError)):
                await login(server, "zoe@localhost/cert", zoe)
            slapd.stop()
            with pytest.raises((PermissionError, ConnectionError)):
                await login(server, "alice@localhost/again", alice)
            await disconnect(client)


async def test_config_needs_the_pools_and_a_filter_that_parses(tmp_path: Path) -> None:
    from suricate.config import ConfigError
    from tests.e2e.harness import server_toml

    toml = server_toml(tmp_path, 5999, 5998, auth_extra='methods = ["ldap"]', extra=f"""
[auth.ldap]
base = "ou=people,{SUFFIX}"
filter = "(objectClass=person"
uids = [{{attr = "uid", format = "no-placeholder"}}]
""")
    from suricate.config.loader import parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(toml, tmp_path)
    text = str(info.value)
    assert "auth.ldap.filter: not an LDAP filter" in text
    assert "auth.ldap.uids[0].format" in text

    toml = server_toml(tmp_path, 5999, 5998, auth_extra='methods = ["ldap"]',
                       extra=f'[auth.ldap]\nbase = "{SUFFIX}"\n')
    with pytest.raises(ConfigError) as info:
        parse_config(toml, tmp_path)
    text = str(info.value)
    assert "auth.ldap.pool_tag: method 'ldap' needs the pool [outgoing_pools.ldap.default]" \
        in text
    assert "auth.ldap.bind_pool_tag: method 'ldap' needs the pool [outgoing_pools.ldap.bind]" \
        in text
