"""Several companies on one server, as a MongooseIM 6.4 operator runs it: a static domain
(a.test) and a domain added at run time under a host type (c.test), with mod_domain_isolation
and mod_muc; real slixmpp clients over TLS. The dynamic domain's users chat and reach its own
conference service but not the other company; a stream opened to it before it is disabled
gets no login (SASL <account-disabled/>), and its sessions end with host-unknown."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError

from suricate.core.domains import DomainError
from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import (
    ALL_MODULES,
    Client,
    RawClient,
    c2s_listener_toml,
    connect,
    disconnect,
    eventually,
    free_port,
    serving,
    sqlite_pool_toml,
)

A, C = "a.test", "c.test"


def config(tmp: Path, c2s_port: int, tls_port: int) -> str:
    cert, _ = ensure_self_signed(tmp / "certs", [A, C], services=("conference",))
    modules = "\n".join(f"[modules.{m}]" for m in (*ALL_MODULES, "mod_muc",
                                                     "mod_domain_isolation"))
    return f"""
[general]
hosts = ["{A}"]
host_types = ["tenants"]
default_server_domain = "{A}"
{c2s_listener_toml(c2s_port, cert.certfile, cert.keyfile)}
{c2s_listener_toml(tls_port, cert.certfile, cert.keyfile, "tls")}
[auth]
methods = ["rdbms"]
password.scram_iterations = 4096
{sqlite_pool_toml(tmp / 'suricate.db')}
{modules}
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.muc]
"""


def plain(user: str, password: str) -> str:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"


async def test_a_dynamic_domain_lives_and_is_disabled(tmp_path: Path) -> None:
    c2s_port, tls_port = free_port(), free_port()
    async with serving(tmp_path, config(tmp_path, c2s_port, tls_port), c2s_port=c2s_port,
                       tls_port=tls_port) as server:
        await server.domains.add(C, "tenants")
        with pytest.raises(DomainError) as refused:  # a.test's conference service already
            await server.domains.add(f"conference.{A}", "tenants")
        assert refused.value.code == "domain_duplicate"
        assert "a module's service domain (of a.test)" in str(refused.value)
        for jid in (f"zoe@{C}", f"ann@{C}", f"alice@{A}"):
            assert await server.auth.register(JID.parse(jid), "pw")
        zoe = await connect(server, f"zoe@{C}/r", "pw", direct_tls=True,
                            plugins=("xep_0030",))
        ann = await connect(server, f"ann@{C}/r", "pw")
        ann.send_presence()
        await ann.next_presence()
        zoe.send_message(mto=JID.parse(f"ann@{C}"), mbody="same company")
        assert (await ann.next_message())["body"] == "same company"
        # Its own conference service answers; the other company's does not, nor its users.
        info = await zoe.plugin["xep_0030"].get_info(jid=f"conference.{C}", timeout=5)
        assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
        for other in (f"conference.{A}", A):
            with pytest.raises(IqError) as err:
                await zoe.plugin["xep_0030"].get_info(jid=other, timeout=5)
            assert err.value.iq["error"]["condition"] == "service-unavailable"

        # A client that opened its stream just before the operator disables the domain.
        late = await RawClient.open(tls_port, tls=True)
        await late.open_stream(C)
        ended = [asyncio.Event(), asyncio.Event()]
        for client, event in zip((zoe, ann), ended, strict=True):
            client.add_event_handler("stream_error", lambda e, ev=event: ev.set()
                                     if e["condition"] == "host-unknown" else None)
        await server.domains.set_enabled(C, False)
        for event in ended:  # the sessions end (RFC 6120 §4.9.3.6)
            await asyncio.wait_for(event.wait(), 5)
        # RFC 6120 §6.5.1: the domain's accounts are disabled, until enableDomain.
        await late.send(plain("zoe", "pw"))
        failure = await late.expect(r"<failure .*?</failure>")
        assert "<account-disabled/>" in failure and "domain disabled" in failure
        assert not server.sessions.lookup(JID.parse(f"zoe@{C}/r"))
        # The other company writing to it learns it at once, not after federation retries.
        alice = await connect(server, f"alice@{A}/r", "pw")
        bounced: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message_error", bounced.put_nowait)
        alice.send_message(mto=JID.parse(f"zoe@{C}"), mbody="are you there?")
        error = await asyncio.wait_for(bounced.get(), 5)
        assert error["error"]["condition"] == "service-unavailable"
        await late.close()
        await disconnect(zoe, ann, alice)


async def test_a_removed_domain_takes_its_rooms(tmp_path: Path) -> None:
    """removeDomain erases the company's data, its conference service's rooms included (6.4's
    remove_domain handlers), with their archives: the next customer given the same domain name
    finds none of them."""
    c2s_port, tls_port = free_port(), free_port()
    async with serving(tmp_path, config(tmp_path, c2s_port, tls_port), c2s_port=c2s_port,
                       tls_port=tls_port) as server:
        plugins = ("xep_0030", "xep_0004", "xep_0045")
        await server.domains.add(C, "tenants")
        assert await server.auth.register(JID.parse(f"zoe@{C}"), "pw")
        zoe = await connect(server, f"zoe@{C}/r", "pw", direct_tls=True, plugins=plugins)
        zoe.send_presence()
        room = SJID(f"board@conference.{C}")
        await zoe.plugin["xep_0045"].join_muc_wait(room, "Zoe", timeout=5)
        form = zoe.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="muc#roomconfig_persistentroom", value="1")
        form.add_field(var="muc#roomconfig_publicroom", value="1")
        await zoe.plugin["xep_0045"].set_room_config(room, form, timeout=5)
        zoe.send_message(mto=room, mbody="board minutes", mtype="groupchat")
        archive = server.modules["mod_mam"].muc_archive.store

        async def archived() -> int:
            rows = await archive.fetch("SELECT COUNT(*) FROM mam_muc_message WHERE server = ?",
                                       f"conference.{C}")
            return int(rows[0][0])

        await eventually(archived)
        await disconnect(zoe)

        await server.domains.remove(C, "tenants")
        await server.domains.add(C, "tenants")  # the next customer
        assert await server.auth.register(JID.parse(f"max@{C}"), "pw")
        new = await connect(server, f"max@{C}/r", "pw", direct_tls=True, plugins=plugins)
        items = await new.plugin["xep_0030"].get_items(jid=f"conference.{C}", timeout=5)
        assert items["disco_items"]["items"] == set()
        assert await archived() == 0
        with pytest.raises(IqError) as err:  # XEP-0045 §6.4: no such room any more
            await new.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert err.value.iq["error"]["condition"] == "item-not-found"
        await disconnect(new)


async def test_each_company_gets_its_certificate(tmp_path: Path) -> None:
    """general.domain_certfile (MongooseIM 5's option, gone from 6.4's TOML, where one
    certificate must name every domain): the c2s listener's certificate is chosen by the SNI
    the client sends (RFC 6066 §3), per static domain, and per host type for the dynamic
    domains (a certificate naming them, or a wildcard). slixmpp verifies it, as a real
    client does."""
    c2s_port, tls_port = free_port(), free_port()
    default, _ = ensure_self_signed(tmp_path / "default", ["localhost"])
    _, per_host = ensure_self_signed(tmp_path / "certs", [A, C])
    toml = config(tmp_path, c2s_port, tls_port).replace(str(tmp_path / "certs" / "server"),
                                                       str(tmp_path / "default" / "server"))
    toml = toml.replace('default_server_domain = "a.test"', f"""default_server_domain = "a.test"
domain_certfile = [
  {{domain = "{A}", certfile = "{per_host[A].certfile}", keyfile = "{per_host[A].keyfile}"}},
  {{domain = "tenants", certfile = "{per_host[C].certfile}", keyfile = "{per_host[C].keyfile}"}},
]""")
    async with serving(tmp_path, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        await server.domains.add(C, "tenants")
        trust = ssl.create_default_context()
        for cert in (default, per_host[A], per_host[C]):
            trust.load_verify_locations(cert.certfile)
        for name in (A, C, "localhost"):  # each name its own certificate, verified
            _, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=trust,
                                                      server_hostname=name)
            writer.close()
        assert await server.auth.register(JID.parse(f"zoe@{C}"), "pw")
        zoe = Client(f"zoe@{C}/r", "pw")
        zoe.ssl_context = trust  # checks the name (slixmpp sends the JID's domain as SNI)
        zoe.enable_direct_tls, zoe.enable_starttls = True, False
        zoe.connect("127.0.0.1", tls_port)
        await asyncio.wait_for(zoe.session_started, 10)
        await disconnect(zoe)


async def test_a_service_applies_its_own_domains_rules(tmp_path: Path) -> None:
    """MongooseIM's default rule muc_create = [{acl = "local", value = "allow"}], with
    local = [{}] (match = "current_domain"): "local" means the users of the domain the MUC
    service belongs to, as 6.4 checks a service's rules for its own host. The other
    company's users (no mod_domain_isolation here) may join, not create rooms; nor nodes on
    the pubsub service with the same rule as access_createnode."""
    c2s_port, tls_port = free_port(), free_port()
    toml = config(tmp_path, c2s_port, tls_port).replace("[modules.mod_domain_isolation]", "")
    toml = toml.replace("[modules.mod_muc]", '[modules.mod_muc]\naccess_create = "muc_create"'
                        '\n[modules.mod_pubsub]\naccess_createnode = "muc_create"'
                        '\n[modules.mod_muc_log]\naccess_log = "muc_create"\noutdir = "logs"')
    toml += '[acl]\nlocal = [{}]\n[access]\nmuc_create = [{acl = "local", value = "allow"}]\n'
    async with serving(tmp_path, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        await server.domains.add(C, "tenants")
        plugins = ("xep_0030", "xep_0004", "xep_0045", "xep_0060")
        clients = []
        for jid in (f"alice@{A}", f"zoe@{C}"):
            assert await server.auth.register(JID.parse(jid), "pw")
            clients.append(await connect(server, f"{jid}/r", "pw", plugins=plugins))
        alice, zoe = clients
        await alice.plugin["xep_0045"].join_muc_wait(SJID(f"own@conference.{A}"), "Alice",
                                                     timeout=5)
        with pytest.raises(PresenceError) as err:  # XEP-0045 §10.1.1: not-allowed
            await zoe.plugin["xep_0045"].join_muc_wait(SJID(f"theirs@conference.{A}"), "Zoe",
                                                       timeout=5)
        assert err.value.condition == "not-allowed"
        # ... and a.test's user on the conference service of c.test likewise.
        with pytest.raises(PresenceError) as err:
            await alice.plugin["xep_0045"].join_muc_wait(SJID(f"x@conference.{C}"), "Alice",
                                                         timeout=5)
        assert err.value.condition == "not-allowed"
        # mod_pubsub's access_createnode likewise, on pubsub.a.test.
        await alice.plugin["xep_0060"].create_node(f"pubsub.{A}", "news", timeout=5)
        with pytest.raises(IqError) as iq_err:
            await zoe.plugin["xep_0060"].create_node(f"pubsub.{A}", "spam", timeout=5)
        assert iq_err.value.iq["error"]["condition"] == "forbidden"
        # mod_muc_log's access_log too: zoe, made an owner of alice's room, may not log it.
        own = SJID(f"own@conference.{A}")
        await alice.plugin["xep_0045"].set_affiliation(own, "owner", jid=SJID(f"zoe@{C}"))
        await zoe.plugin["xep_0045"].join_muc_wait(own, "Zoe", timeout=5)
        form = zoe.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="muc#roomconfig_enablelogging", value="1")
        with pytest.raises(IqError) as iq_err:
            await zoe.plugin["xep_0045"].set_room_config(own, form, timeout=5)
        assert iq_err.value.iq["error"]["condition"] == "forbidden"
        await disconnect(alice, zoe)
