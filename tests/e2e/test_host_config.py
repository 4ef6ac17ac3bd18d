"""[[host_config]] with real clients: two domains served by one server, one with accounts in
the database (SCRAM), the other with the dummy method (PLAIN over TLS, any password); one
with mod_vcard and mod_offline and the other without, and mod_version with other options on
each; per-host access rules. Each client sees its own domain's configuration, and a message
is stored offline or bounced by the recipient's domain's modules."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.jid import JID
from suricate.net.certs import ensure_self_signed
from tests.auth.common import SASL
from tests.e2e.harness import (
    ALL_MODULES,
    RawClient,
    c2s_listener_toml,
    connect,
    disconnect,
    eventually,
    free_port,
    serving,
    sqlite_pool_toml,
)

A, B = "a.test", "b.test"
MODULES_B = [m for m in ALL_MODULES if m not in ("mod_vcard", "mod_offline")]


def config(tmp: Path, c2s_port: int, tls_port: int) -> str:
    cert, _ = ensure_self_signed(tmp / "certs", [A, B])
    top_modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES)
    b_modules = "\n".join(f"[host_config.modules.{m}]" for m in MODULES_B
                          if m != "mod_version")
    return f"""
[general]
hosts = ["{A}", "{B}"]
default_server_domain = "{A}"
{c2s_listener_toml(c2s_port, cert.certfile, cert.keyfile)}
{c2s_listener_toml(tls_port, cert.certfile, cert.keyfile, "tls")}
[auth]
methods = ["rdbms"]
password.scram_iterations = 4096
{sqlite_pool_toml(tmp / 'suricate.db')}
[acl]
local = [{{}}]
[access]
register = [{{acl = "all", value = "allow"}}]
{top_modules}

[[host_config]]
host = "{B}"
[host_config.auth]
methods = ["dummy"]
dummy.base_time = 0
dummy.variance = 0
[host_config.access]
c2s = [{{acl = "banned", value = "deny"}}]
[host_config.acl]
banned = [{{user = "mallory"}}]
{b_modules}
[host_config.modules.mod_version]
os_info = true
"""


async def mechanisms(port: int, domain: str) -> list[str]:
    """The legacy SASL mechanisms offered on the direct-TLS port to a stream for domain."""
    raw = await RawClient.open(port, tls=True)
    try:
        await raw.send(
            f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        features = await raw.expect(r"<stream:features.*?</stream:features>")
    finally:
        await raw.close()
    legacy = re.search(rf"<mechanisms xmlns=.{SASL}.>(.*?)</mechanisms>", features)
    assert legacy is not None, features
    return re.findall(r"<mechanism>([^<]+)</mechanism>", legacy.group(1))


async def test_two_domains_with_their_own_auth_and_modules(tmp_path: Path) -> None:
    c2s_port, tls_port = free_port(), free_port()
    async with serving(tmp_path, config(tmp_path, c2s_port, tls_port), c2s_port=c2s_port,
                       tls_port=tls_port) as server:
        assert await server.auth.register(JID.parse(f"alice@{A}"), "alice-pw")
        # a.test: the database's SCRAM accounts; b.test: dummy, PLAIN only (over TLS).
        assert "SCRAM-SHA-256" in await mechanisms(tls_port, A)
        assert await mechanisms(tls_port, B) == ["PLAIN"]

        alice = await connect(server, f"alice@{A}/r", "alice-pw",
                              plugins=("xep_0030", "xep_0054", "xep_0092"))
        with pytest.raises(PermissionError):
            await connect(server, f"alice@{A}/x", "anything")
        # dummy: any user, any password; the same name on a.test is another account.
        bob = await connect(server, f"bob@{B}/r", "anything",
                            plugins=("xep_0030", "xep_0054", "xep_0092"))
        assert await server.auth.user_exists(JID.parse(f"bob@{B}"))
        assert not await server.auth.user_exists(JID.parse(f"bob@{A}"))
        # b.test's access rule c2s, merged before the top level's: mallory may not log in.
        with pytest.raises((PermissionError, ConnectionError, asyncio.TimeoutError)):
            await connect(server, f"mallory@{B}/r", "x", timeout=5)

        # mod_vcard runs for a.test only: its disco feature and its IQ.
        info_a = await alice["xep_0030"].get_info(jid=A, timeout=5)
        info_b = await bob["xep_0030"].get_info(jid=B, timeout=5)
        assert "vcard-temp" in info_a["disco_info"]["features"]
        assert "vcard-temp" not in info_b["disco_info"]["features"]
        await alice["xep_0054"].publish_vcard(alice["xep_0054"].make_vcard(), timeout=5)
        with pytest.raises(IqError) as err:
            await bob["xep_0054"].publish_vcard(bob["xep_0054"].make_vcard(), timeout=5)
        assert err.value.iq["error"]["condition"] == "service-unavailable"

        assert server.module_for("mod_vcard", A) is server.modules["mod_vcard"]
        assert server.module_for("mod_vcard", B) is None
        version_a_module = server.module_for("mod_version", A)
        version_b_module = server.module_for("mod_version", B)
        assert version_a_module is not None and version_b_module is not None
        assert not version_a_module.opts["os_info"] and version_b_module.opts["os_info"]

        # mod_version on both, with b.test's own options (os_info = true).
        version_a = await alice["xep_0092"].get_version(A, timeout=5)
        version_b = await bob["xep_0092"].get_version(B, timeout=5)
        assert not version_a["software_version"]["os"]
        assert version_b["software_version"]["os"]

        # Offline storage is the recipient's domain's: kept for a.test, bounced for b.test
        # (RFC 6121 §8.5.2.2.1: no offline storage -> service-unavailable).
        assert await server.auth.register(JID.parse(f"carol@{A}"), "carol-pw")
        errors: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message_error", errors.put_nowait)
        bob.send_message(mto=JID.parse(f"carol@{A}"), mbody="kept for carol")
        alice.send_message(mto=JID.parse(f"zed@{B}"), mbody="nobody keeps this")
        error = await asyncio.wait_for(errors.get(), 5)
        assert error["from"].bare == f"zed@{B}"
        assert error["error"]["condition"] == "service-unavailable"
        offline = server.modules["mod_offline"]

        async def stored_for_carol() -> bool:
            return bool(await offline.store.count_offline(A, "carol") == 1)

        await eventually(stored_for_carol)
        await disconnect(alice, bob)


async def test_a_host_type_configures_its_dynamic_domains(tmp_path: Path) -> None:
    """host_type = "guests": a domain added at run time under it gets the host type's auth
    (dummy) and modules (no mod_vcard); the static domain keeps the top level's."""
    c2s_port, tls_port = free_port(), free_port()
    cert, _ = ensure_self_signed(tmp_path / "certs", [A, "guest.test"])
    top_modules = "\n".join(f"[modules.{m}]" for m in ALL_MODULES)
    guest_modules = "\n".join(f"[host_config.modules.{m}]" for m in MODULES_B)
    toml = f"""
[general]
hosts = ["{A}"]
host_types = ["guests"]
default_server_domain = "{A}"
{c2s_listener_toml(c2s_port, cert.certfile, cert.keyfile)}
{c2s_listener_toml(tls_port, cert.certfile, cert.keyfile, "tls")}
[auth]
methods = ["rdbms"]
password.scram_iterations = 4096
{sqlite_pool_toml(tmp_path / 'suricate.db')}
{top_modules}

[[host_config]]
host_type = "guests"
[host_config.auth]
methods = ["dummy"]
dummy.base_time = 0
dummy.variance = 0
{guest_modules}
"""
    async with serving(tmp_path, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        await server.domains.add("guest.test", "guests")
        assert await mechanisms(tls_port, "guest.test") == ["PLAIN"]
        assert "SCRAM-SHA-256" in await mechanisms(tls_port, A)
        guest = await connect(server, "visitor@guest.test/r", "whatever",
                              plugins=("xep_0030",))
        info = await guest["xep_0030"].get_info(jid="guest.test", timeout=5)
        assert "vcard-temp" not in info["disco_info"]["features"]
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        with pytest.raises(PermissionError):
            await connect(server, f"visitor@{A}/r", "whatever")
        await disconnect(guest)


async def test_subdomain_services_only_where_their_module_runs(tmp_path: Path) -> None:
    """mod_muc, mod_muc_light and mod_pubsub at the top level, and a static domain (b.test)
    and a host type (guests) whose [[host_config]] modules leave them out, as a MongooseIM
    operator gives an anonymous domain fewer modules: the server starts, a.test gets
    conference/muclight/pubsub services, the other domains none (their disco#items); the
    vCard directory, of a module they all have, is everywhere."""
    c2s_port, tls_port = free_port(), free_port()
    cert, _ = ensure_self_signed(tmp_path / "certs", [A, B, "guest.test"])
    services = ("mod_muc", "mod_muc_light", "mod_pubsub")
    top_modules = "\n".join(f"[modules.{m}]" for m in (*ALL_MODULES, *services))
    few = "\n".join(f"[host_config.modules.{m}]" for m in ALL_MODULES)
    toml = f"""
[general]
hosts = ["{A}", "{B}"]
host_types = ["guests"]
default_server_domain = "{A}"
{c2s_listener_toml(c2s_port, cert.certfile, cert.keyfile)}
{c2s_listener_toml(tls_port, cert.certfile, cert.keyfile, "tls")}
[auth]
methods = ["dummy"]
dummy.base_time = 0
dummy.variance = 0
{sqlite_pool_toml(tmp_path / 'suricate.db')}
{top_modules}

[[host_config]]
host = "{B}"
{few}

[[host_config]]
host_type = "guests"
{few}
"""
    async with serving(tmp_path, toml, c2s_port=c2s_port, tls_port=tls_port) as server:
        await server.domains.add("guest.test", "guests")
        # mod_vcard (in every domain's modules) serves its user directory on the static
        # domains; serve_subdomains knows the domains served at start only, so the dynamic
        # guest.test gets no service (of any module) yet.
        subdomains = {"conference", "muclight", "pubsub", "vjud"}
        for domain, expected in ((A, subdomains), (B, {"vjud"}), ("guest.test", set())):
            client = await connect(server, f"someone@{domain}/r", "x", plugins=("xep_0030",))
            items = await client["xep_0030"].get_items(jid=domain, timeout=5)
            listed = {jid.split(".", 1)[0] for jid, _, _ in items["disco_items"]["items"]
                      if jid.endswith("." + domain)}
            assert listed == expected, domain
            await disconnect(client)
