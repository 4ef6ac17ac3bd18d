"""Suricate federating with Prosody 0.12 and ejabberd 23.01 (Debian packages) on their own
loopback addresses: a slixmpp client on each server exchanges messages, presence
subscriptions and pings with a client on Suricate in both directions, over TLS, once with
SASL EXTERNAL (XEP-0178) and once with Server Dialback (XEP-0220)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from tests.e2e.harness import (
    Client,
    auth_toml,
    c2s_listener_toml,
    disconnect,
    eventually,
    free_port,
    general_toml,
    sqlite_pool_toml,
)
from tests.interop import peers as P
from tests.s2s.harness import federated_server, register

pytestmark = [pytest.mark.timeout(150), pytest.mark.xdist_group("fixed-ports")]


def _missing() -> str | None:
    absent = [b for b in ("prosody", "ejabberdctl") if shutil.which(b) is None]
    if not os.path.exists(P.NSS_WRAPPER):
        absent.append("libnss-wrapper")
    for ip in (P.PROSODY_IP, P.EJABBERD_IP):
        with socket.socket() as s:
            try:
                s.bind((ip, 0))
            except OSError:
                absent.append(f"loopback address {ip}")
    return ", ".join(absent) or None


def require_peers() -> None:
    """Skip without Prosody, ejabberd and their loopback set-up; under CI=true, fail."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"interop peers missing under CI=true: {missing}")
        pytest.skip(f"interop peers missing: {missing} (apt-get install prosody ejabberd "
                    "libnss-wrapper)")


@pytest.fixture(scope="module")
def peers() -> Iterator[P.Peers]:
    require_peers()
    peers = P.make_peers()
    try:
        peers.start_prosody({"paula": "pass"})
        peers.start_ejabberd({"eddie": "pass"})
        yield peers
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":  # keep the logs for a look
            P.remove(peers)


def suricate_toml(peers: P.Peers, c2s_port: int, auth: str, modules: str = "",
                  direct_tls_port: int | None = None) -> str:
    """``modules``: more module sections (TOML) after the basic ones; ``direct_tls_port``:
    a second s2s listener there with direct TLS (XEP-0368), and outgoing streams in direct
    TLS to the peers' same port."""
    cert, key, _ = peers.combined_pem(P.SURICATE)
    if auth == "external":
        listen_verify = f'tls.cacertfile = "{peers.ca.certfile}"'
        outgoing_tls = f"""tls.certfile = "{cert}"
tls.keyfile = "{key}"
tls.cacertfile = "{peers.ca.certfile}"
"""
    else:
        # no client certificate, no certificate checks: identity by dialback only
        listen_verify = 'tls.verify_mode = "none"'
        outgoing_tls = 'tls.verify_mode = "none"\n'
    direct_listener = ""
    if direct_tls_port is not None:
        outgoing_tls += 'tls.mode = "tls"\n'
        direct_listener = f"""
[[listen.s2s]]
port = {direct_tls_port}
ip_address = "{P.SURICATE_IP}"
tls.mode = "tls"
tls.certfile = "{cert}"
tls.keyfile = "{key}"
{listen_verify}
"""
    addresses = "".join(f"""
[[s2s.outgoing.address]]
host = "{domain}"
ip_address = "{ip}"
port = {direct_tls_port or peers.s2s_port}
""" for domain, ip in P.ROUTES.items() if not domain.endswith(P.SURICATE))
    basic = "\n".join(f"[modules.{m}]" for m in (
        "mod_disco", "mod_ping", "mod_presence", "mod_roster", "mod_offline"))
    return f"""
{general_toml(P.SURICATE)}
{c2s_listener_toml(c2s_port, cert, key)}

[[listen.s2s]]
port = {peers.s2s_port}
ip_address = "{P.SURICATE_IP}"
tls.certfile = "{cert}"
tls.keyfile = "{key}"
{listen_verify}
{direct_listener}
{auth_toml()}
{sqlite_pool_toml(peers.root / f'suricate-{auth}.db')}

[s2s]
default_policy = "allow"

[s2s.outgoing]
connection_timeout = 5000
state_timeout = 10000
max_retry_delay = 2
{outgoing_tls}
{addresses}

{basic}
{modules}
"""


def _new_client(jid: str) -> Client:
    client = Client(jid, "pass")
    # The test answers subscription requests itself (slixmpp would approve at once).
    client.auto_authorize = None
    client.auto_subscribe = False
    for plugin in ("xep_0199", "xep_0030"):
        client.register_plugin(plugin)
    return client


async def _client(jid: str, ip: str, port: int) -> Client:
    client = _new_client(jid)
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.connect(ip, port)
    await asyncio.wait_for(client.session_started, 20)
    # An "interested resource" (RFC 6121 §2.1.6) gets the roster pushes the test reads.
    await client.get_roster(timeout=10)
    return client


async def _presence_from(client: Client, jid: str, type_: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pres = await asyncio.wait_for(client.presences.get(), deadline - loop.time())
        if str(pres["from"]).startswith(jid) and pres["type"] == type_:
            return


async def _exchange(server: Server, ours: Client, theirs: Client, their_domain: str,
                    auth: str) -> None:
    mine, their_jid = str(ours.boundjid.bare), str(theirs.boundjid.bare)
    ours_full = str(ours.boundjid)
    # messages, both directions
    ours.send_message(mto=str(theirs.boundjid), mbody="hello from suricate", mtype="chat")
    msg = await theirs.next_message(timeout=20)
    assert (str(msg["from"]), msg["body"]) == (ours_full, "hello from suricate")
    theirs.send_message(mto=ours_full, mbody=f"hello from {their_domain}",
                        mtype="chat")
    msg = await ours.next_message(timeout=20)
    assert msg["body"] == f"hello from {their_domain}"
    assert str(msg["from"]) == str(theirs.boundjid)

    # the requested authentication, both ways, over TLS
    link = server.s2s.links[(P.SURICATE, their_domain)]
    assert link.stream is not None and link.stream.conn.tls is not None
    assert link.stream.auth_method == auth
    incoming = [s for s in server.s2s.incoming if their_domain in s.remote_domains]
    assert incoming and all(s.conn.tls is not None for s in incoming)
    assert {s.auth_methods[their_domain] for s in incoming} == {auth}

    # pings: servers and clients, both directions
    assert await ours.plugin["xep_0199"].ping(their_domain, timeout=15) is not None
    assert await theirs.plugin["xep_0199"].ping(P.SURICATE, timeout=15) is not None
    assert await ours.plugin["xep_0199"].ping(str(theirs.boundjid), timeout=15) is not None
    assert await theirs.plugin["xep_0199"].ping(ours_full, timeout=15) is not None

    # presence subscriptions, both directions
    ours.send_presence(pto=their_jid, ptype="subscribe")
    await _presence_from(theirs, mine, "subscribe")
    theirs.send_presence(pto=mine, ptype="subscribed")
    await _presence_from(ours, their_jid, "subscribed")
    theirs.send_presence(pto=mine, ptype="subscribe")
    await _presence_from(ours, their_jid, "subscribe")
    ours.send_presence(pto=their_jid, ptype="subscribed")
    # Prosody 0.12 tells its client with a roster push rather than the <presence
    # type='subscribed'/> itself; the roster is what both peers agree on.

    async def theirs_subscribed() -> bool:
        return theirs.client_roster[mine]["subscription"] in ("to", "both")
    await eventually(theirs_subscribed, timeout=15)


@pytest.mark.parametrize("auth", ["external", "dialback"])
@pytest.mark.parametrize("peer", ["prosody", "ejabberd"])
async def test_federation_with_real_servers(peers: P.Peers, tmp_path: Path, auth: str,
                                            peer: str) -> None:
    c2s = free_port()
    toml = suricate_toml(peers, c2s, auth)
    async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
        # a new local user per test: the peers (and their rosters) live for the module
        sam = f"sam-{auth}-{peer}"
        await register(server, sam)
        domain = P.PROSODY if peer == "prosody" else P.EJABBERD
        user = "paula" if peer == "prosody" else "eddie"
        ours = _new_client(f"{sam}@suricate.test/s")
        ours.connect("127.0.0.1", c2s)
        await asyncio.wait_for(ours.session_started, 10)
        theirs = await _client(f"{user}@{domain}/t", P.ADDRESSES[domain],
                               peers.c2s_ports[domain])
        try:
            ours.send_presence()
            theirs.send_presence()
            await _exchange(server, ours, theirs, domain, auth)
        finally:
            await disconnect(ours, theirs)


@pytest.mark.parametrize("auth", ["external", "dialback"])
async def test_direct_tls_both_ways_with_prosody(tmp_path: Path, auth: str) -> None:
    # XEP-0368: TLS from the first byte on s2s, both directions ([[listen.s2s]] and
    # [s2s.outgoing] tls.mode = "tls"), authenticated as over STARTTLS. A Prosody of its own,
    # which reaches Suricate's direct TLS port first (its xmpps-server target).
    require_peers()
    peers = P.make_peers()
    direct = P.port_free_everywhere()
    try:
        peers.start_prosody({"paula": "pass"}, direct_tls_port=direct)
        c2s = free_port()
        toml = suricate_toml(peers, c2s, auth, direct_tls_port=direct)
        async with federated_server(tmp_path, P.SURICATE, toml, c2s, peers.s2s_port) as server:
            await register(server, "sam")
            ours = _new_client("sam@suricate.test/s")
            ours.connect("127.0.0.1", c2s)
            await asyncio.wait_for(ours.session_started, 10)
            theirs = await _client("paula@prosody.test/t", P.PROSODY_IP,
                                   peers.c2s_ports[P.PROSODY])
            try:
                ours.send_message(mto=str(theirs.boundjid), mbody="direct", mtype="chat")
                assert (await theirs.next_message(timeout=20))["body"] == "direct"
                theirs.send_message(mto=str(ours.boundjid), mbody="back", mtype="chat")
                assert (await ours.next_message(timeout=20))["body"] == "back"
                link = server.s2s.links[(P.SURICATE, P.PROSODY)]
                assert link.stream is not None and link.stream.conn.tls is not None
                assert link.stream.conn.peer[1] == direct
                assert link.stream.auth_method == auth
                incoming = [s for s in server.s2s.incoming if P.PROSODY in s.remote_domains]
                assert incoming and all(s.opts["port"] == direct and s.conn.tls is not None
                                        for s in incoming)
                assert {s.auth_methods[P.PROSODY] for s in incoming} == {auth}
            finally:
                await disconnect(ours, theirs)
    finally:
        peers.stop()
        if os.environ.get("SURICATE_KEEP_INTEROP") != "1":
            P.remove(peers)
