"""mod_sic: XEP-0279 Server IP Check, the client's IP address and port as the server sees them.

A client gathering candidates for a media session (XEP-0176 ICE-UDP, XEP-0065 SOCKS5) asks its
server where it seems to connect from, a hint that it is behind a NAT (XEP-0279 §1). The answer
is the peer address of the client's own connection (``conn.peer``): the TCP socket's peer, or
the address the load balancer gave in its PROXY protocol header when the listener has
``proxy_protocol = true`` (suricate.net.connection replaces the peer with it). For BOSH and
WebSocket sessions it is the peer of the HTTP connection that opened the session; Suricate does
not read X-Forwarded-For, so behind an HTTP reverse proxy that is the proxy's address.

Only ``urn:xmpp:sic:1`` is answered, as MongooseIM 6.4 does (the ``urn:xmpp:sic:0`` of the
protoXEP with its bare ``<ip/>`` was never registered).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import Section
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

NS_SIC = "urn:xmpp:sic:1"


def peer_address(peer: Any) -> tuple[str, int] | None:
    """``(ip, port)`` of a transport's peer (``getpeername()`` shape: IPv4 pairs, IPv6
    four-tuples), or None for anything else (a Unix socket, no socket at all). An IPv4 client
    of a dual-stack listener shows as ``::ffff:a.b.c.d``; it is given back as ``a.b.c.d``, the
    address the client knows itself by."""
    if not isinstance(peer, tuple) or len(peer) < 2 or not isinstance(peer[1], int):
        return None
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), peer[1]


class ModSic(Module):
    name = "mod_sic"
    options = Section(
        {"iqdisc": iqdisc("one_queue")},
        doc="XEP-0279 Server IP Check: a client asks the IP address and port the server sees "
            "it connect from.",
    )
    xeps = ("0279",)
    # XEP-0279 §2 sends the request without 'to' (RFC 6120 §10.3: the account's bare JID,
    # scope "sm"); a client may also address the server itself (scope "local").
    iq_handlers = (("local", NS_SIC, "to_server"), ("sm", NS_SIC, "to_account"))
    # XEP-0279 §3: the server says it supports the protocol in its disco#info.
    features = (NS_SIC,)

    def to_server(self, iq: IqRequest) -> Element:
        return self._answer(iq)

    def to_account(self, iq: IqRequest) -> Element:
        if iq.type == "get" and iq.frm.bare != iq.to.bare:
            # Someone else's address is not theirs to learn (MongooseIM answers forbidden).
            raise StanzaError("forbidden")
        return self._answer(iq)

    def _answer(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            raise StanzaError("not-allowed")  # §2 defines retrieval only
        if iq.payload.name != "address":
            raise StanzaError("bad-request")
        session = self.server.sessions.lookup(iq.frm) if iq.frm.resource else None
        conn = getattr(session, "conn", None)
        address = peer_address(getattr(conn, "peer", None))
        if address is None:
            # Not one of this server's clients (a remote entity, a component) or a transport
            # without an IP peer: there is no address to report to it.
            raise StanzaError("service-unavailable")
        result = Element("address", NS_SIC)
        result.add("ip", text=address[0])
        result.add("port", text=str(address[1]))
        return result
