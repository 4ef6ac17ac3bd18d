"""general.route_subdomains (MongooseIM 6.4): a stanza to a subdomain of a served domain that no
service of the server answers is bounced with service-unavailable (RFC 3920 §10.3, 6.4's
default), or, with route_subdomains = "s2s" (top level or per host), sent over s2s to the server
of that subdomain: here a second Suricate serving sub.alpha.test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import disconnect, free_port
from tests.s2s.harness import federated_server, federated_toml, login, register

ALPHA, SUB = "alpha.test", "sub.alpha.test"

PER_HOST = f"""
[[host_config]]
host = "{ALPHA}"
[host_config.general]
route_subdomains = "s2s"
"""


async def test_subdomain_without_a_service_is_bounced(tmp_path: Path) -> None:
    c2s, s2s = free_port(), free_port()
    # An address for sub.alpha.test exists: only the rule keeps the stanza from going there.
    toml = federated_toml(tmp_path, ALPHA, c2s, s2s, {SUB: ("127.0.0.1", free_port())},
                          "dialback", None)
    async with federated_server(tmp_path, ALPHA, toml, c2s, s2s) as alpha:
        await register(alpha, "alice")
        alice = await login(alpha, f"alice@{ALPHA}/a")
        try:
            alice.send_message(mto=f"bob@{SUB}", mbody="anyone?", mtype="chat")
            err = await alice.next_message()
            assert err["type"] == "error"
            assert err["error"]["condition"] == "service-unavailable"
            assert err["body"] == "anyone?"
            assert not alpha.s2s.links  # no s2s connection was even tried
            # A domain that is no subdomain of ours still goes over s2s.
            assert not alpha.s2s.is_local_subdomain("alpha.test.example")
            assert alpha.s2s.is_local_subdomain("a.b.alpha.test")
        finally:
            await disconnect(alice)


@pytest.mark.parametrize("where", ["general", "host_config"])
async def test_route_subdomains_s2s_federates_with_the_subdomain(tmp_path: Path,
                                                                 where: str) -> None:
    ports = {d: (free_port(), free_port()) for d in (ALPHA, SUB)}
    alpha_toml = federated_toml(tmp_path / ALPHA, ALPHA, *ports[ALPHA],
                                {SUB: ("127.0.0.1", ports[SUB][1])}, "dialback", None,
                                extra=PER_HOST if where == "host_config" else "")
    if where == "general":
        alpha_toml = alpha_toml.replace("[general]\n", '[general]\nroute_subdomains = "s2s"\n', 1)
    sub_toml = federated_toml(tmp_path / SUB, SUB, *ports[SUB],
                              {ALPHA: ("127.0.0.1", ports[ALPHA][1])}, "dialback", None)
    async with federated_server(tmp_path / ALPHA, ALPHA, alpha_toml, *ports[ALPHA]) as alpha, \
            federated_server(tmp_path / SUB, SUB, sub_toml, *ports[SUB]) as sub:
        await register(alpha, "alice")
        await register(sub, "bob")
        alice = await login(alpha, f"alice@{ALPHA}/a")
        bob = await login(sub, f"bob@{SUB}/b")
        try:
            alice.send_message(mto=f"bob@{SUB}/b", mbody="hi sub", mtype="chat")
            msg = await bob.next_message()
            assert (str(msg["from"]), msg["body"]) == (f"alice@{ALPHA}/a", "hi sub")
            bob.send_message(mto=f"alice@{ALPHA}/a", mbody="hi parent", mtype="chat")
            msg = await alice.next_message()
            assert (str(msg["from"]), msg["body"]) == (f"bob@{SUB}/b", "hi parent")
        finally:
            await disconnect(alice, bob)
