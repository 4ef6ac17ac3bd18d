"""What a reverse proxy in front (nginx, HAProxy) says of the client it passes on: the scheme
it was reached with (``X-Forwarded-Proto``, RFC 7239 ``Forwarded``) and the client's address
(``X-Forwarded-For``).

The scheme only shapes documents sent back to the asker (host-meta links), so it is read from
anyone. What changes how a session is treated (counted as TLS, the address registration limits
apply to) is believed from a proxy on this host only, a loopback peer (Prosody's default
``trusted_proxies``): from anyone else the headers are the client's own claims.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any


def forwarded_proto(headers: Mapping[str, str]) -> str | None:
    """The scheme a reverse proxy was reached with: ``X-Forwarded-Proto`` (the de facto
    header), else the first ``proto=`` of RFC 7239 ``Forwarded`` (§5.4); None without
    either."""
    value = headers.get("x-forwarded-proto")
    if value:
        return value.split(",")[0].strip().lower()
    for element in headers.get("forwarded", "").split(",")[:1]:
        for pair in element.split(";"):
            name, _, token = pair.strip().partition("=")
            if name.lower() == "proto" and token:
                return token.strip('"').lower()
    return None


def from_local_proxy(peer: Any) -> bool:
    """``peer`` (a socket's peername) is on this host: a proxy whose headers are believed."""
    host = peer[0] if isinstance(peer, tuple) and peer else None
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def behind_tls_proxy(peer: Any, headers: Mapping[str, str]) -> bool:
    """The proxy ended the client's TLS (``X-Forwarded-Proto: https`` or RFC 7239
    ``proto=https``): the session is as encrypted as over wss, up to the proxy (believed from
    anyone, a plain ws client would be offered FAST)."""
    return from_local_proxy(peer) and forwarded_proto(headers) == "https"


def client_address(peer: Any, headers: Mapping[str, str]) -> Any:
    """The client's address as the proxy saw it: the last ``X-Forwarded-For`` entry (the one
    our proxy added; those before it are whatever the client sent), as ``(address, 0)``;
    ``peer`` itself otherwise. registration_timeout, ip_access and the logs then see clients,
    not the proxy."""
    if not from_local_proxy(peer):
        return peer
    forwarded = headers.get("x-forwarded-for", "").split(",")[-1].strip()
    try:
        return (str(ipaddress.ip_address(forwarded)), 0)
    except ValueError:
        return peer
