"""HTTP Basic authentication of the three endpoints (6.4):

- ``admin``: the listener's ``username``/``password``; without them the endpoint is open
  (bind it to a loopback address then),
- ``domain_admin``: ``admin@DOMAIN`` with the password set by ``setDomainPassword``,
- ``user``: an account's JID and password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.admin.context import Caller
from suricate.auth.failures import client_ip
from suricate.jid import JID, InvalidJID
from suricate.sasl.passwords import verify_password

if TYPE_CHECKING:
    from suricate.core.server import Server


log = logging.getLogger("suricate.admin")


class Unauthorized(Exception):
    """Missing or wrong credentials; the message is safe to show."""


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("only HTTP Basic authentication is supported")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    return user, password


async def authenticate(server: Server, endpoint: str, opts: Mapping[str, Any],
                       header: str | None, peer: Any = None) -> Caller:
    """The caller the request's ``Authorization`` header proves. ``peer``: the client's
    address (after a local proxy's ``X-Forwarded-For``). Password guessing is slowed and
    logged as on client streams (suricate.auth.failures): HTTP keep-alive would otherwise
    allow any number of guesses on one connection."""
    creds = basic_credentials(header)
    if creds is None or (endpoint == "admin" and opts.get("username") is None):
        return await _authenticate(server, endpoint, opts, creds)
    ip = client_ip(peer)
    name = _account_key(creds[0])
    wait = server.auth_failures.delay(ip, name)
    if wait:
        await asyncio.sleep(wait)
    try:
        caller = await _authenticate(server, endpoint, opts, creds)
    except Unauthorized as err:
        server.auth_failures.failed(ip, name)
        # The same shape as c2s_auth_failed, for the same fail2ban filter.
        log.warning("http_auth_failed ip=%s user=%s endpoint=%s reason=%s", ip or "-",
                 name or "-", endpoint, err)
        raise
    server.auth_failures.succeeded(name)
    return caller


def _account_key(user: str) -> str:
    """The Basic user name as the failure counts know it: a bare JID as c2s counts it, or
    what was sent, with anything that could break a log line replaced."""
    try:
        return str(JID.parse(user).bare)
    except (InvalidJID, ValueError):
        return "".join(c if c.isprintable() and not c.isspace() else "_" for c in user[:200])


async def _authenticate(server: Server, endpoint: str, opts: Mapping[str, Any],
                        creds: tuple[str, str] | None) -> Caller:
    if endpoint == "admin":
        if opts.get("username") is None:
            return Caller("admin")
        if creds is None:
            raise Unauthorized("credentials required")
        user_ok = hmac.compare_digest(creds[0].encode(), str(opts["username"]).encode())
        pass_ok = hmac.compare_digest(creds[1].encode(), str(opts["password"]).encode())
        if not (user_ok and pass_ok):
            raise Unauthorized("invalid admin credentials")
        return Caller("admin")
    if creds is None:
        raise Unauthorized("credentials required")
    try:
        jid = JID.parse(creds[0])
    except (InvalidJID, ValueError):
        raise Unauthorized("the user name must be a JID") from None
    if endpoint == "domain_admin":
        if jid.local != "admin" or jid.resource is not None:
            raise Unauthorized("log in as admin@DOMAIN")
        record = await server.storage.get_domain_admin(jid.domain)
        if record is None or not server.is_local_domain(jid.domain) \
                or not verify_password(None, record, creds[1]):
            raise Unauthorized("invalid domain admin credentials")
        return Caller("domain_admin", domain=jid.domain)
    if jid.local is None or not server.is_local_domain(jid.domain) \
            or not await server.auth.check_password(jid.bare, creds[1]):
        raise Unauthorized("invalid user credentials")
    return Caller("user", jid=jid.bare)
