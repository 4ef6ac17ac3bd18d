"""HTTP Basic authentication of the three endpoints (6.4):

- ``admin``: the listener's ``username``/``password``; without them the endpoint is open
  (bind it to a loopback address then),
- ``domain_admin``: ``admin@DOMAIN`` with the password set by ``setDomainPassword``,
- ``user``: an account's JID and password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.admin.context import Caller
from suricate.jid import JID, InvalidJID
from suricate.sasl.passwords import verify_password

if TYPE_CHECKING:
    from suricate.core.server import Server


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
                       header: str | None) -> Caller:
    creds = basic_credentials(header)
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
