"""An outgoing pool's ``tls`` section (``[outgoing_pools.<type>.<tag>.connection.tls]``) as the
``ssl`` context of its client connections: one reading of the section for every pool type
(rdbms, http), which differ only in whether the server's name is checked."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

_TLS_VERSIONS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}


def pool_client_context(tls: Mapping[str, Any], check_hostname: bool) -> ssl.SSLContext:
    """``verify_mode = "peer"`` (the default) verifies the server's chain against
    ``cacertfile`` or the OS store, and its name when ``check_hostname``; ``"none"`` verifies
    nothing (a service with a self-signed certificate); ``"selfsigned_peer"`` verifies as
    ``"peer"`` (stdlib ssl cannot tell a self-signed certificate apart: give it as
    ``cacertfile``). ``certfile``/``keyfile`` are our client certificate, for a server that
    asks for one; ``versions`` and ``ciphers`` bound what is offered."""
    ctx = ssl.create_default_context(cafile=tls.get("cacertfile"))
    if (tls.get("verify_mode") or "peer") == "none":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    versions = [_TLS_VERSIONS[v] for v in (tls.get("versions") or ["tlsv1.2", "tlsv1.3"])]
    ctx.minimum_version, ctx.maximum_version = min(versions), max(versions)
    if tls.get("ciphers"):
        ctx.set_ciphers(tls["ciphers"])
    if tls.get("certfile"):
        ctx.load_cert_chain(tls["certfile"], tls.get("keyfile") or tls["certfile"],
                            password=tls.get("password"))
    return ctx


def http_pool_ssl_context(conn: Mapping[str, Any]) -> ssl.SSLContext | None:
    """``[outgoing_pools.http.<tag>.connection.tls]`` as the client context of the pool's https
    requests, the server's name checked (RFC 2818 §3.1); None (aiohttp's default: the OS
    store, the name checked) without it. ``verify_mode = "none"`` is for a service with a
    self-signed certificate (MongoosePush's own, out of the box)."""
    tls = conn.get("tls")
    return pool_client_context(tls, check_hostname=True) if tls else None
