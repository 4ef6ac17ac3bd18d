"""mod_fast_auth_token: XEP-0484 Fast Authentication Streamlining Tokens.

A client that logged in through SASL2 with a <user-agent id=.../> may ask for a token
(<request-token mechanism='HT-...'/>); later it logs in with that token alone through the
hashed-token mechanism it chose (``suricate.sasl.ht``), in one round trip, possibly inside
TLS 1.3 early data.

Tokens (XEP-0484 §5 "two slots"): per user and agent id, a 'new' slot (issued, not used yet)
and a 'current' one. A login with the 'new' token promotes it, so a rotation lost on the wire
never locks the client out. Rotation: a login within ``rotate_before_expire`` of the expiry
gets a fresh token in <success/>. <fast invalidate='true'/> empties both slots (and a
<request-token/> in the same request gets a new one).

Storage (the database alone must not log anyone in): a slot keeps a random seed, never the
token. The token is HMAC-SHA-256(server key, seed | credential fingerprint), where the server
key lives in a file next to the configuration (``fast_auth_token.key``), not in the database,
and the fingerprint is a hash of the account's stored credentials (its first SCRAM hash, which
a XEP-0480 upgrade keeps: ``credential_fingerprint``). So a copy of the database yields no
token, a changed password changes every token of the account (they stop working),
and a removed account has no credentials to derive from. (A plain hash of the token would
not do: the HT mechanisms prove possession with an HMAC keyed by the token itself, so the
verifier needs the key, and for keys longer than the hash block RFC 2104 §2 makes
HMAC(token, m) = HMAC(H(token), m): the hash would be as good as the token.)

Replay protection (XEP-0484 §3.4): a <fast count='n'/> must exceed the last count accepted
for the token (checked and recorded in one conditional UPDATE); authentication inside TLS
0-RTT data without a count is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suricate import sasl
from suricate.auth.service import AuthUnavailable
from suricate.config.modules_spec import backend, period
from suricate.config.spec import DEFAULTS, Option, Section
from suricate.core import hooks as H
from suricate.core.keyfile import load_or_create_key
from suricate.core.module import GraphQLCategory, Module, PersonalData
from suricate.modules.mod_fast_auth_token.store import FastToken, FastTokenStore
from suricate.sasl.ht import HashedToken, TokenCandidate, ht_mechanism_names, parse_ht_name
from suricate.sasl.passwords import HASH_NAMES, is_scram_record, parse_scram_record
from suricate.storage.base import UserRecord
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S
    from suricate.core.server import Server
    from suricate.jid import JID

log = logging.getLogger("suricate.mod_fast_auth_token")

KEY_FILE = "fast_auth_token.key"
_UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def period_seconds(period: dict[str, Any]) -> int:
    """A MongooseIM period (``{value = 3, unit = "days"}``) in seconds."""
    return int(period["value"]) * _UNITS[period["unit"]]


@dataclass(slots=True)
class FastAttempt:
    """One FAST login in progress, in ``c2s.module_state["mod_fast_auth_token"]``."""

    mechanism: str
    agent_id: str | None
    count: int | None
    invalidate: bool
    used: FastToken | None = None


class ModFastAuthToken(Module):
    name = "mod_fast_auth_token"
    graphql = GraphQLCategory("suricate.modules.mod_fast_auth_token.graphql")
    options = Section(
        {
            "backend": backend(),
            "validity_period": Option(
                Section(
                    {
                        "access": period(3, "days", "How long a token can be used."),
                        "rotate_before_expire": period(
                            6,
                            "hours",
                            "A login this close to the token's expiry gets a new token; "
                            "0 disables rotation.",
                        ),
                    }
                ),
                DEFAULTS,
                "Token lifetimes.",
            ),
        },
        doc="XEP-0484 Fast Authentication Streamlining Tokens (HT-* mechanisms).",
    )
    xeps = ("0484",)
    deps = ("mod_sasl2",)
    hooks = (
        (H.SASL2_INLINE_FEATURES, "inline_feature", 50),
        (H.SASL2_MECHANISM, "mechanism", 50),
        (H.SASL2_SUCCESS, "issue_token", 70),
    )
    store_class = FastTokenStore
    store: FastTokenStore

    def __init__(self, server: Server, opts: Any) -> None:
        super().__init__(server, opts)
        validity = opts.get("validity_period") or {}
        self.access = period_seconds(validity.get("access", {"value": 3, "unit": "days"}))
        self.rotate_before = period_seconds(
            validity.get("rotate_before_expire", {"value": 6, "unit": "hours"}))
        self._key = b""
        self.early_data_logins = 0  # FAST logins read from TLS 1.3 early data

    async def start(self) -> None:
        self._key = load_or_create_key(self.server.base_dir / KEY_FILE)

    async def personal_data(self, jid: JID) -> list[PersonalData]:
        """The account's XEP-0484 tokens, one row per client (its user-agent id), for GDPR
        retrieval: their mechanisms and expiry, not their seeds (a seed is a credential)."""
        columns = ("user_agent_id", "current_mech", "current_expire", "new_mech",
                   "new_expire")
        return [PersonalData("fast_auth_token", columns, await self.store.user_rows(
            "fast_auth_token", columns, jid.domain, jid.local or "", "user_agent_id"))]

    # -- advertisement (XEP-0484 §3.1) ---------------------------------------------------------
    def available_mechanisms(self, c2s: C2S) -> list[str]:
        tls = c2s.conn.tls
        if tls is None:
            return []  # XEP-0484 §6: FAST only over TLS
        return ht_mechanism_names(tls.channel_binding_types())

    def inline_feature(self, acc: list[Element], c2s: C2S) -> list[Element]:
        mechanisms = self.available_mechanisms(c2s)
        if not mechanisms:
            return acc
        attrs = {}
        if (c2s.opts.get("tls") or {}).get("early_data"):
            attrs["tls-0rtt"] = "true"
        fast = Element("fast", ns.FAST, attrs)
        for name in mechanisms:
            fast.add("mechanism", text=name)
        return [*acc, fast]

    # -- authentication with a token -------------------------------------------------------------
    def mechanism(self, acc: Any, c2s: C2S, name: str, request: Element) -> Any:
        if acc is not None or parse_ht_name(name) is None:
            return acc
        if name not in self.available_mechanisms(c2s) or ns.FAST not in c2s.sasl2_offered_inline:
            return None  # not offered here: invalid-mechanism
        fast = request.find("fast", ns.FAST)
        count: int | None = None
        if fast is not None and fast.attrs.get("count") is not None:
            try:
                count = int(fast.attrs["count"])
            except ValueError:
                count = -1  # never greater than a stored count: refused below
        attempt = FastAttempt(
            mechanism=name,
            agent_id=c2s.user_agent.id if c2s.user_agent is not None else None,
            count=count,
            invalidate=fast is not None and fast.attrs.get("invalidate") in ("true", "1"))
        c2s.module_state[self.name] = attempt
        c2s.credential_source = self.verify
        return HashedToken(c2s.sasl_context(), name)

    async def verify(self, c2s: C2S, username: str) -> sasl.Result:
        mech = c2s.mechanism
        attempt: FastAttempt | None = c2s.module_state.get(self.name)
        assert isinstance(mech, HashedToken) and attempt is not None
        domain = c2s.domain or self.server.default_domain
        if attempt.agent_id is None:
            # XEP-0484 §4.1: tokens are per client; without <user-agent id/> there is none.
            return sasl.Failure("not-authorized", "FAST needs a SASL2 user-agent id")
        if c2s.early_data_auth and (attempt.count is None or attempt.count < 0):
            # XEP-0484 §3.4: 0-RTT data may be replayed; only a counted attempt is safe.
            return sasl.Failure("not-authorized", "a count is required in TLS early data")
        try:
            user = await self._credentials(domain, username)
        except AuthUnavailable:
            return sasl.Failure("temporary-auth-failure")
        slots = await self.store.get_fast_tokens(domain, username, attempt.agent_id)
        now = time.time()
        candidates: list[TokenCandidate] = []
        by_slot: dict[str, FastToken] = {}
        if user is not None and slots is not None:
            # A token is bound to one of the record's SCRAM hashes (``credential_
            # fingerprints``), or, issued before that, to the whole record: it holds until
            # the record no longer has that hash (a new password), or until it changes.
            fingerprints = credential_fingerprints(user)
            # XEP-0484 §5: the 'new' slot first, then 'current'; a token bound to another
            # mechanism is not a candidate (§3.4).
            for slot_name, token in (("new", slots.new), ("current", slots.current)):
                if token is None or token.mechanism != mech.name:
                    continue
                label = slot_name if token.expire > now else f"expired-{slot_name}"
                by_slot[label] = token
                candidates.extend(TokenCandidate(self.derive(token.seed, user, fingerprint),
                                                 label) for fingerprint in fingerprints)
        result = mech.tokens(candidates)
        if not isinstance(result, sasl.Success):
            return result
        slot = mech.matched_slot or ""
        token = by_slot[slot]
        if slot.startswith("expired-"):
            # XEP-0484 §4.2: a token we no longer trust -> credentials-expired
            return sasl.Failure("credentials-expired")
        if not await self.store.use_fast_token(domain, username, attempt.agent_id, slot,
                                                        token.seed, attempt.count):
            log.info("fast_token_replay user=%s@%s count=%s", username, domain, attempt.count)
            return sasl.Failure("not-authorized", "token counter already used")
        attempt.used = token
        if c2s.early_data_auth:
            self.early_data_logins += 1
            log.info("fast_login_0rtt user=%s@%s count=%s", username, domain, attempt.count)
        return result

    # -- issuing tokens (XEP-0484 §3.2, §3.5, §3.6) --------------------------------------------
    async def issue_token(self, acc: list[Element], c2s: C2S, request: Element) -> list[Element]:
        attempt: FastAttempt | None = c2s.module_state.pop(self.name, None)
        user = c2s.user
        agent_id = c2s.user_agent.id if c2s.user_agent is not None else None
        if user is None or user.local is None or agent_id is None:
            return acc
        wanted = request.find("request-token", ns.FAST)
        mechanism: str | None = None
        if wanted is not None:
            requested = wanted.attrs.get("mechanism", "")
            if requested in self.available_mechanisms(c2s):
                mechanism = requested
        if attempt is not None and attempt.used is not None:
            if attempt.invalidate:
                await self.store.remove_fast_tokens(user.domain, user.local, agent_id)
                log.info("fast_token_invalidated user=%s agent=%s", user, agent_id)
            elif mechanism is None and self.rotate_before > 0 \
                    and attempt.used.expire - time.time() <= self.rotate_before:
                mechanism = attempt.used.mechanism  # rotation: same mechanism as before
        if mechanism is None:
            return acc
        try:
            record = await self._credentials(user.domain, user.local)
        except AuthUnavailable:
            return acc  # the account service is down: no new token this time
        if record is None:
            # anonymous accounts, and methods without credentials (jwt, external, dummy, pki)
            return acc
        seed = secrets.token_urlsafe(18)
        expire = time.time() + self.access
        await self.store.store_fast_token(user.domain, user.local, agent_id,
                                                   FastToken(seed, expire, mechanism))
        token = self.derive(seed, record).decode()
        log.info("fast_token_issued user=%s agent=%s mech=%s", user, agent_id, mechanism)
        expiry = datetime.fromtimestamp(expire, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return [*acc, Element("token", ns.FAST, {"expiry": expiry, "token": token})]

    # -- tokens from seeds -----------------------------------------------------------------------
    async def _credentials(self, domain: str, username: str) -> sasl.CredentialRecord | None:
        """The account's credentials from the auth methods in order (the database, or an
        http service's get_password): tokens are bound to them."""
        return await self.server.auth.credentials(username, domain)

    def derive(self, seed: str, user: UserRecord | sasl.CredentialRecord,
               fingerprint: bytes | None = None) -> bytes:
        """The token (ASCII, used as the HMAC key by HT-*) of ``seed`` for the account's
        current credentials (``credential_fingerprint``, or the one given)."""
        if fingerprint is None:
            fingerprint = credential_fingerprint(user)
        mac = hmac.new(self._key, b"xep-0484 token\0" + seed.encode() + b"\0" + fingerprint,
                       hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=")


def credential_fingerprint(user: UserRecord | sasl.CredentialRecord) -> bytes:
    """What a token is bound to when it is issued: what a password change replaces and a
    SASL upgrade task (XEP-0480) keeps. An upgrade adds stronger SCRAM keys next to the ones
    stored, which stay (§5); a new password replaces every key (new salts). So the
    fingerprint is the record's first SCRAM hash in MongooseIM's order (SHA-1 first, the one
    an account moved in from Prosody has), with a plain password if one is stored; a record
    that is not SCRAM is taken whole."""
    return credential_fingerprints(user)[0]


def credential_fingerprints(user: UserRecord | sasl.CredentialRecord) -> list[bytes]:
    """Every fingerprint a valid token may be bound to, the issuing one first: one per SCRAM
    hash stored, since a token was bound to the record's first hash when it was issued and an
    upgrade since may have added one before it (SHA-256 to a SHA-512-only record); then the
    whole record, what tokens were bound to before (``whole_record_fingerprint``)."""
    whole = whole_record_fingerprint(user)
    details = user.pass_details or ""
    if not is_scram_record(details):
        return [whole]
    try:
        keys = parse_scram_record(details)
    except ValueError:
        return [whole]
    password = (user.password or "").encode()
    found = [hashlib.sha256(b"\0".join((
        b"scram", key.hash_name.encode(), key.salt, str(key.iterations).encode(),
        key.stored_key, key.server_key, password))).digest()
        for key in (keys[name] for name in HASH_NAMES if name in keys)]
    return [*found, whole] if whole not in found else found


def whole_record_fingerprint(user: UserRecord | sasl.CredentialRecord) -> bytes:
    """The stored credentials taken whole (what tokens were bound to before, and still are
    when the record is not SCRAM)."""
    return hashlib.sha256(
        (user.pass_details or "").encode() + b"\0" + (user.password or "").encode()
    ).digest()
