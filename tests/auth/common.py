"""Helpers shared by the auth method tests: a raw SASL exchange over direct TLS, for the
conditions no client library reports (temporary-auth-failure, the offered mechanisms)."""

from __future__ import annotations

import base64
import re

from suricate.core.server import Server
from tests.e2e.harness import RawClient

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


async def offered(server: Server, direct_tls: bool = True) -> list[str]:
    """The SASL mechanisms offered on the direct-TLS port (or before STARTTLS)."""
    port = server.tls_port if direct_tls else server.c2s_port  # type: ignore[attr-defined]
    raw = await RawClient.open(port, tls=direct_tls)
    try:
        await raw.send(
            "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        # the whole element: the first "/>" may be <starttls/>'s, before the mechanisms
        features = await raw.expect(r"<stream:features.*?(</stream:features>|<stream:features/>)")
    finally:
        await raw.close()
    # RFC 6120 §6.4.1's <mechanisms/> only (SASL2 lists its own, XEP-0388 §2.1)
    legacy = re.search(r"<mechanisms xmlns=.urn:ietf:params:xml:ns:xmpp-sasl.>(.*?)</mechanisms>",
                       features)
    return re.findall(r"<mechanism>([^<]+)</mechanism>", legacy.group(1)) if legacy else []


async def plain_outcome(server: Server, user: str, password: str,
                        port: int | None = None) -> str:
    """PLAIN over direct TLS (the tls_port, or ``port``): "success" or the failure
    condition."""
    raw = await RawClient.open(port or server.tls_port, tls=True)  # type: ignore[attr-defined]
    try:
        await raw.open_stream()
        await raw.send(plain_auth(user, password))
        got = await raw.expect(r"<success[^>]*/>|<success.*?</success>|<failure.*?</failure>",
                               timeout=10)
    finally:
        await raw.close()
    if got.startswith("<success"):
        return "success"
    m = re.search(r"<failure[^>]*><([a-z-]+)", got)
    assert m, got
    return m.group(1)


def plain_auth(user: str, password: str) -> str:
    """A SASL PLAIN <auth/> with its initial response."""
    msg = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='{SASL}' mechanism='PLAIN'>{msg}</auth>"
