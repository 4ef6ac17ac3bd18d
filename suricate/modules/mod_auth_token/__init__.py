"""mod_auth_token: MongooseIM's token-based reconnection (X-OAUTH), with mod_keystore.

A logged-in client asks its own bare JID for tokens (``<iq type='get'><query
xmlns='erlang-solutions.com:xmpp:token-auth:0'/></iq>``) and gets an access token and a
refresh token (``<items><access_token/><refresh_token/></items>``, base64). Later it
authenticates with SASL X-OAUTH, the token as the whole initial response, instead of its
password (legacy SASL or SASL2; offered only over TLS, only when ``auth.sasl_mechanisms``
lists ``oauth``, which it does by default).

* Access tokens: valid until ``validity_period.access`` after issue; nothing is stored, they
  cannot be revoked (MongooseIM's definition).
* Refresh tokens: valid until ``validity_period.refresh`` after issue and while their sequence
  number is not below the account's one in table ``auth_token``; ``revoke_token`` (GraphQL
  not wired: the ``token`` category is mod_fast_auth_token's in Suricate) increments it, so every refresh token issued so far stops working.
  Removing the account removes the row (every refresh token dies with it). A login with a
  refresh token answers <success/> with a new access token as additional data.
* A token signed with another key, altered, expired, revoked, of another domain, or for an
  account that no longer exists: SASL ``not-authorized``.

Tokens are signed with mod_keystore's key ``token_secret`` (``token.py`` has the format).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from suricate import sasl
from suricate.auth.service import AuthUnavailable
from suricate.config.modules_spec import backend, iqdisc, period, period_seconds
from suricate.config.spec import DEFAULTS, Option, Section
from suricate.core import hooks as H
from suricate.core.iq import IqRequest
from suricate.core.module import Module, PersonalData
from suricate.jid import JID
from suricate.modules.mod_auth_token.store import AuthTokenStore
from suricate.modules.mod_auth_token.token import Token, TokenError, parse, serialize
from suricate.modules.mod_keystore import ModKeystore
from suricate.protocol.errors import StanzaError
from suricate.sasl.xoauth import XOAuth
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.config.loader import References
    from suricate.core.c2s import C2S
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_auth_token")

NS_TOKEN_AUTH = "erlang-solutions.com:xmpp:token-auth:0"
MECHANISM = "X-OAUTH"
KEY_NAME = "token_secret"


class TokenUnavailable(RuntimeError):
    """No ``token_secret`` key (mod_keystore not started)."""


class ModAuthToken(Module):
    name = "mod_auth_token"
    options = Section(
        {
            "backend": backend(),
            "iqdisc": iqdisc("no_queue"),
            "validity_period": Option(
                Section(
                    {
                        "access": period(1, "hours", "Validity of an access token."),
                        "refresh": period(25, "days", "Validity of a refresh token."),
                    }
                ),
                DEFAULTS,
                "Token lifetimes.",
            ),
        },
        doc="Token-based reconnection: the token IQ and SASL X-OAUTH (needs mod_keystore "
            "with a key named `token_secret`).",
    )
    deps = ("mod_keystore",)
    hooks = (
        (H.C2S_SASL_MECHANISMS, "offer", 50),
        (H.SASL_MODULE_MECHANISM, "mechanism", 50),
    )
    iq_handlers = (("sm", NS_TOKEN_AUTH, "token_iq"),)
    store_class = AuthTokenStore
    store: AuthTokenStore

    def __init__(self, server: Server, opts: Any) -> None:
        super().__init__(server, opts)
        validity = opts.get("validity_period") or {}
        self.access = period_seconds(validity.get("access", {"value": 1, "unit": "hours"}))
        self.refresh = period_seconds(validity.get("refresh", {"value": 25, "unit": "days"}))

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """Whether refresh tokens were issued to the account (their sequence number: the
        tokens themselves are never stored), for GDPR retrieval."""
        return [PersonalData("auth_token", ("seq_no",), await self.store.user_rows(
            "auth_token", ("seq_no",), jid.domain, jid.local or ""))]

    @classmethod
    def check_config(cls, opts: Any, path: str, refs: References) -> None:
        keystore = refs.modules.get("mod_keystore")
        keys = keystore.get("keys") if isinstance(keystore, dict) else None
        names = [k.get("name") for k in keys if isinstance(k, dict)] \
            if isinstance(keys, list) else []
        if KEY_NAME not in names:
            refs.report.error(path, f"needs a key named '{KEY_NAME}' in "
                                    "modules.mod_keystore.keys (type \"ram\" or \"file\")")

    def _key(self) -> bytes:
        keystore = self.server.modules.get("mod_keystore")
        key = keystore.get_key(KEY_NAME) if isinstance(keystore, ModKeystore) else None
        if not key:
            raise TokenUnavailable(KEY_NAME)
        return key

    # -- issuing ---------------------------------------------------------------------------
    def access_token(self, jid: JID) -> bytes:
        token = Token("access", str(jid.bare), int(time.time()) + self.access)
        return serialize(token, self._key())

    async def tokens_for(self, jid: JID) -> tuple[bytes, bytes]:
        """A new (access, refresh) pair for the account ``jid``, binary."""
        seq = await self.store.current_seq_no(jid.domain, jid.local or "")
        refresh = Token("refresh", str(jid.bare), int(time.time()) + self.refresh, seq)
        return self.access_token(jid), serialize(refresh, self._key())

    async def _older_than_account(self, jid: JID, token: Token) -> bool:
        """Whether ``token`` was issued before the account was created (its issue time is
        its expiry less the configured validity; tokens carry no issue time in 6.4's format).
        Only for accounts of the server's own database (others have no creation time)."""
        row = await self.server.storage.get_user(jid.domain, jid.local or "")
        if row is None:
            return False
        validity = self.refresh if token.type == "refresh" else self.access
        # Whole seconds: a token issued in the second the account was created passes.
        return token.expires_at - validity < int(row.created_at)

    async def revoke_token(self, jid: JID) -> bool:
        """Invalidate every refresh token of ``jid``; False when none was ever issued."""
        revoked = await self.store.revoke(jid.domain, jid.local or "")
        log.info("auth_token_revoked user=%s revoked=%s", jid.bare, revoked)
        return revoked

    async def token_iq(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            raise StanzaError("bad-request")
        if iq.frm.bare != iq.to.bare or iq.frm.local is None:
            raise StanzaError("forbidden")  # only for oneself
        try:
            access, refresh = await self.tokens_for(iq.frm)
        except TokenUnavailable as e:
            raise StanzaError("internal-server-error") from e
        items = Element("items", NS_TOKEN_AUTH)
        items.add("access_token", text=base64.b64encode(access).decode())
        items.add("refresh_token", text=base64.b64encode(refresh).decode())
        log.info("auth_token_issued user=%s", iq.frm.bare)
        return items

    # -- X-OAUTH ---------------------------------------------------------------------------
    def offer(self, acc: list[str], c2s: C2S) -> list[str]:
        if c2s.conn.tls is None or MECHANISM in acc or "oauth" not in c2s.auth.sasl_mechanisms:
            return acc  # like PLAIN: the token is a bearer credential, TLS only
        return [*acc, MECHANISM]

    def mechanism(self, acc: Any, c2s: C2S, name: str) -> Any:
        if acc is not None or name != MECHANISM:
            return acc
        c2s.credential_source = self.verify
        return XOAuth(c2s.sasl_context())

    async def verify(self, c2s: C2S, username: str) -> sasl.Result:
        mech = c2s.mechanism
        assert isinstance(mech, XOAuth)
        domain = c2s.domain or self.server.default_domain
        try:
            token = parse(mech.token, self._key())
        except TokenError as e:
            log.info("auth_token_refused user=%s@%s reason=%s", username, domain, e)
            return sasl.Failure("not-authorized")
        except TokenUnavailable:
            return sasl.Failure("temporary-auth-failure")
        jid = JID(username, domain, None)
        if JID.parse(token.jid) != jid:
            return sasl.Failure("not-authorized")
        if token.expires_at <= time.time():
            log.info("auth_token_expired user=%s type=%s", jid, token.type)
            return sasl.Failure("not-authorized", "token expired")
        if token.type == "refresh":
            valid = await self.store.get_seq_no(domain, username)
            if valid is None or token.seq_no is None or token.seq_no < valid:
                log.info("auth_token_revoked_used user=%s", jid)
                return sasl.Failure("not-authorized", "token revoked")
        try:
            record = await self.server.auth.credentials(username, domain)
        except AuthUnavailable:
            return sasl.Failure("temporary-auth-failure")
        if record is None:
            return sasl.Failure("not-authorized")  # the account is gone
        if await self._older_than_account(jid, token):
            # Issued to a removed account of the same name: the new account's data must not
            # open to the old one's devices (its refresh token's number may be valid again).
            log.info("auth_token_of_removed_account user=%s type=%s", jid, token.type)
            return sasl.Failure("not-authorized", "token revoked")
        extra = self.access_token(jid) if token.type == "refresh" else None
        return sasl.Success(username, None, extra)
