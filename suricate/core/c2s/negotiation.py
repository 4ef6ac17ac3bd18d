"""Stream negotiation on a client stream: STARTTLS (RFC 6120 §5), SASL (§6) and SASL2
(XEP-0388), resource binding (§7) and Bind 2 (XEP-0386).

The protocol decisions are made by the sans-IO ``suricate.protocol.negotiation.SaslNegotiator``
and its binding helpers; this layer executes what they ask for: it writes the replies, moves
the state machine, fetches credentials (the account store, or a module's own source such as
FAST tokens), applies the access rules, and runs the hooks modules take part through
(features, SASL2 inline requests, Bind 2, pre-authentication IQs).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from suricate import sasl
from suricate.auth.failures import client_ip
from suricate.auth.methods import AuthUnavailable
from suricate.auth.service import CERT_METHODS, STORED_METHODS, AuthService
from suricate.core import hooks as H
from suricate.core.c2s.delivery import Delivery
from suricate.jid import JID, InvalidJID
from suricate.net.peer_cert import common_names, xmpp_addrs
from suricate.protocol import c2s as P
from suricate.protocol import negotiation as N
from suricate.protocol.c2s import C2SState as S
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.sasl.passwords import (
    SALT_LENGTH,
    format_scram_record,
    hashlib_name,
    is_scram_record,
    keys_from_salted,
    parse_scram_record,
)
from suricate.storage import StorageError
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.net.tls import TLSConfig

log = logging.getLogger("suricate.c2s")

_T = TypeVar("_T")

#: How long before the state's deadline a slow auth backend is given up on, so that the
#: client's temporary-auth-failure is written before the connection-timeout would be.
_DEADLINE_MARGIN = 0.1

#: Seconds a client has, after STARTTLS (or the direct TLS handshake) with a self-signed
#: certificate, to open the stream: its user is asked whether to trust the certificate.
#: Prosody's limit for a stream that has not authenticated (c2s_timeout) is the same.
CERTIFICATE_REVIEW_SECONDS = 300


def _loggable(mechanism: str) -> str:
    """The mechanism name the client sent, if it is one (RFC 4422 §3.1: 1 to 20 of A-Z, 0-9,
    '-', '_'); '?' otherwise: a character reference (``&#10;``) in the attribute would
    otherwise write a forged line, naming someone else's address, for fail2ban to ban."""
    if 0 < len(mechanism) <= 20 and all(c in _MECHANISM_CHARS for c in mechanism):
        return mechanism
    return "?"


_MECHANISM_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    """Fetch a given-up lookup's exception, so asyncio does not log it as never retrieved
    (the backend logged its failure already)."""
    if not task.cancelled():
        task.exception()


# A mechanism's own source of credentials (FAST tokens): (c2s, username) -> the next result.
CredentialSource = Callable[[Any, str], Awaitable[Any]]

#: c2s.module_state key set while the SASL exchange under way logs in an anonymous account
#: with PLAIN (``auth.anonymous.protocol = "login_anon"``).
LOGIN_ANON_KEY = "auth.login_anon"

#: c2s.module_state key holding, during a SASL exchange, the password of an account still
#: stored in the clear under ``password.format = "scram"`` (rewritten at its login).
IN_THE_CLEAR_KEY = "auth.in_the_clear"

#: c2s.module_state key of the XEP-0480 upgrade under way (between <continue/> and the end).
UPGRADE_KEY = "sasl2.upgrade"


@dataclass(slots=True)
class _Upgrade:
    """SASL2 authentication succeeded; these upgrade tasks remain before <success/>."""

    result: sasl.Success
    request: Element  # the <authenticate/>, whose inline requests <success/> answers
    tasks: list[str]
    record: str  # the account's SCRAM record, with the keys stored so far
    iterations: int
    salt: bytes | None = None  # sent for the current task (after its <next/>)


class Negotiation(Delivery):
    __slots__ = ("tls_config", "negotiator", "anonymous", "user_agent", "credential_source",
                 "early_data_auth")

    tls_config: TLSConfig | None
    negotiator: N.SaslNegotiator
    anonymous: bool
    user_agent: N.UserAgent | None
    credential_source: CredentialSource | None
    early_data_auth: bool

    # -- provided by the session layer ------------------------------------------------------
    def _open_session(self, full: JID, elsewhere: int = 0,
                      same_client: bool = False) -> StanzaError | None:
        raise NotImplementedError

    def _end_earlier_sessions_of_client(self) -> None:
        raise NotImplementedError

    def deliver_inherited(self) -> None:
        raise NotImplementedError

    # -- what the negotiator knows, as modules read it -------------------------------------
    @property
    def mechanism(self) -> Any:
        """The SASL mechanism object of the exchange in progress (FAST checks its tokens)."""
        return self.negotiator.mechanism

    @property
    def mechanism_name(self) -> str:
        return self.negotiator.mechanism_name

    @property
    def sasl2(self) -> Element | None:
        """The SASL2 <authenticate/> being processed, None for legacy SASL."""
        return self.negotiator.sasl2

    @property
    def auth_failures(self) -> int:
        return self.negotiator.failures

    @property
    def sasl2_offered_inline(self) -> frozenset[str]:
        """Namespaces of the SASL2 inline features offered to this stream."""
        return self.negotiator.sasl2_inline

    @property
    def is_tls(self) -> bool:
        return self.conn.tls is not None

    @property
    def in_early_data(self) -> bool:
        """Bytes are being read before the TLS handshake finished: TLS 1.3 0-RTT data, which an
        attacker may replay (RFC 8446 §8)."""
        tls = self.conn.tls
        return tls is not None and not tls.established

    # -- executing the negotiator's actions --------------------------------------------------
    def _run(self, actions: list[N.Action]) -> Awaitable[None] | None:
        for action in actions:
            if isinstance(action, N.Reply):
                self.send(action.element)
            elif isinstance(action, N.Goto):
                self._goto(action.state)
            elif isinstance(action, N.AuthFailed):
                self.credential_source = None
                self.server.metrics_auth_failed(self)
                name = self._attempted_name()
                ip = client_ip(self.conn.peer)
                guessed = action.guessed
                if guessed:
                    self.server.auth_failures.failed(ip, name)
                # One line per failure, for fail2ban (docs/operations.md): the client's
                # address (after PROXY protocol / X-Forwarded-For) and the account tried;
                # a wrong password at warning, seen with the default loglevel (as ejabberd).
                log.log(logging.WARNING if guessed else logging.INFO,
                        "c2s_auth_failed ip=%s user=%s mech=%s condition=%s domain=%s",
                        ip or "-", name or "-", _loggable(self.negotiator.mechanism_name),
                        action.condition, self.domain)
            elif isinstance(action, N.CloseStream):
                self.stream_error(action.error)
                return None
            elif isinstance(action, N.NeedCredentials):
                return self._fetch_credentials(action.username)
            elif isinstance(action, N.Authenticated):
                return self._authenticated(action.result)
        return None

    def _attempted_name(self) -> str | None:
        """The bare JID the attempt under way names, None before the mechanism read one."""
        username = self.negotiator.username
        return f"{username}@{self.domain or self.server.default_domain}" if username else None

    async def _wait_after_failures(self) -> None:
        """Recent failed logins from this address or for this name: wait before checking
        the credentials (suricate.auth.failures), within the state's deadline."""
        wait = self.server.auth_failures.delay(client_ip(self.conn.peer),
                                               self._attempted_name() or "")
        if not wait:
            return
        left = self.state_time_left()
        if left is not None:
            wait = min(wait, max(left - 2 * _DEADLINE_MARGIN, 0))
        await asyncio.sleep(wait)

    async def _fetch_credentials(self, username: str) -> None:
        await self._wait_after_failures()
        if self.fsm.state is S.CLOSED:
            return
        if self.credential_source is not None:
            # A mechanism with its own credentials (FAST: the user's tokens).
            actions = self.negotiator.result(await self.credential_source(self, username))
        else:
            auth = self.auth
            mechanism = self.negotiator.mechanism
            checked_by_methods = auth.checks_plain and isinstance(mechanism, sasl.Plain)
            # MongooseIM 6.4's allowed_auth_methods: only these may log in through this
            # listener (dummy or login_anon elsewhere must not take any password here).
            only = self.opts.get("allowed_auth_methods") or None
            try:
                if checked_by_methods:
                    record = await self._in_time(auth.plain_credentials(
                        username, self.domain or "", mechanism.pending_password, only))
                else:
                    record = await self._in_time(auth.credentials(username,
                                                                  self.domain or "", only))
            except (StorageError, AuthUnavailable):
                # RFC 6120 §6.5.12: the database (or an external auth service) is down or
                # too slow; the client may try again later, and the stream stays up with a
                # fresh state_timeout for that.
                log.warning("c2s_auth_storage_unavailable domain=%s", self.domain)
                actions = self.negotiator.fail("temporary-auth-failure")
                if self.fsm.state is not S.CLOSED:
                    self.restart_state_timer()
            else:
                if record is not None and record.anonymous:
                    self.module_state[LOGIN_ANON_KEY] = True
                elif record is not None and not checked_by_methods \
                        and auth.in_the_clear(record.password, record.pass_details):
                    # Stored in the clear: a SCRAM record once the login succeeds.
                    self.module_state[IN_THE_CLEAR_KEY] = record.password
                actions = self.negotiator.credentials(record)
        if self.fsm.state is S.CLOSED:
            # The stream ended while the credentials were looked up (a slow auth service
            # outlived the client's patience, or state_timeout): nobody to answer.
            return
        nxt = self._run(actions)
        if nxt is not None:
            await nxt

    async def _in_time(self, lookup: Coroutine[Any, Any, _T]) -> _T:
        """``lookup``'s answer, or AuthUnavailable shortly before the state's deadline:
        an auth backend slower than the listener's ``state_timeout`` (an extauth program
        or LDAP server that hangs for their 5 s, an HTTP service with a longer
        ``request_timeout``) must give the client temporary-auth-failure (RFC 6120
        §6.5.12), not a connection-timeout stream error. Only methods outside our database
        are bounded: a database lookup keeps running inline, with no task."""
        left = self.state_time_left()
        if left is None or not self.auth.others:
            return await lookup
        task = asyncio.ensure_future(lookup)
        done, _ = await asyncio.wait({task}, timeout=max(left - _DEADLINE_MARGIN, 0))
        if not done:
            # Left to finish: the backend ends it with its own timeout (an extauth program
            # is then replaced); cancelling could leave a program mid-exchange.
            task.add_done_callback(_discard_outcome)
            log.warning("c2s_auth_backend_too_slow domain=%s", self.domain)
            raise AuthUnavailable("no answer within state_timeout")
        return task.result()

    # -- before authentication: features, STARTTLS -------------------------------------------
    def _tls_mode(self) -> str | None:
        return self.tls_config.mode if self.tls_config is not None else None

    def _starttls_offered(self) -> bool:
        return self._tls_mode() in ("starttls", "starttls_required") and not self.is_tls

    def _tls_required_but_missing(self) -> bool:
        return self._tls_mode() == "starttls_required" and not self.is_tls

    @property
    def auth(self) -> AuthService:
        """The ``[auth]`` of the domain this stream is addressed to (its ``[[host_config]]``
        may give it other methods)."""
        return self.server.auth.for_domain(self.domain or self.server.default_domain)

    def sasl_mechanisms(self) -> list[str]:
        """The SASL mechanisms this stream offers now (legacy and SASL2 alike)."""
        if self._tls_required_but_missing():
            return []
        cb_types = self.conn.tls.channel_binding_types() if self.conn.tls is not None else []
        names = self.auth.mechanisms(tls=self.is_tls, cb_types=cb_types,
                                            listener=self.opts,
                                            client_cert=self._client_cert_usernames()[0])
        if not self.is_tls and self._tls_mode() is not None:
            # PLAIN sends the password itself: never before TLS on a listener that offers TLS
            # (a listener without any TLS table is the operator's explicit choice).
            names = [n for n in names if n != "PLAIN"]
        names = self.server.hooks.fold(H.C2S_SASL_MECHANISMS, names, self)
        return names

    def _client_cert_usernames(self) -> tuple[bool, list[str]]:
        """Whether the client presented a certificate the handshake verified (the listener's
        ``tls.verify_mode`` is ``peer`` or ``selfsigned_peer``: the TLS layer refuses any other
        certificate), and the usernames of this domain it proves per ``auth.sasl_external``
        (MongooseIM 6.4: xmppAddr identities, or the subject CN)."""
        tls = self.conn.tls
        verify = (self.opts.get("tls") or {}).get("verify_mode") or "none"
        if tls is None or verify not in ("peer", "selfsigned_peer") \
                or not CERT_METHODS & set(self.auth.methods):
            return False, []
        cert = tls.peer_certificate()
        if cert is None:
            return False, []
        domain = self.domain or self.server.default_domain
        modes = self.auth.cfg.get("sasl_external") or ["standard"]
        candidates = []
        if "standard" in modes:
            candidates += xmpp_addrs(cert)
        if "common_name" in modes:
            candidates += [n if "@" in n else f"{n}@{domain}" for n in common_names(cert)]
        usernames: list[str] = []
        for candidate in candidates:
            try:
                jid = JID.parse(candidate)
            except InvalidJID:
                continue
            if jid.local and jid.resource is None and jid.domain == domain \
                    and jid.local not in usernames:
                usernames.append(jid.local)
        return True, usernames

    def sasl_context(self, mechanisms: list[str] | None = None) -> sasl.SaslContext:
        """``mechanisms``: ``sasl_mechanisms()`` when the caller has just asked it."""
        verified, usernames = self._client_cert_usernames()
        return sasl.SaslContext(
            cert_usernames=usernames,
            cert_verified=verified,
            cert_any_authzid="auth_id" in (self.auth.cfg.get("sasl_external") or ()),
            server=self.domain or self.server.default_domain,
            channel_binding=self.conn.tls if self.conn.tls is not None else None,
            advertised_mechanisms=(self.sasl_mechanisms() if mechanisms is None
                                   else mechanisms),
            advertised_cb_types=(self.conn.tls.channel_binding_types()
                                 if self.conn.tls is not None else []),
            scram_iterations=self.auth.scram_iterations,
            # Both for the fake exchange of an unknown user, as costly as a real one.
            password_format=self.auth.password_format,
            password_hashes=self.auth.hashes,
            fake_salt_secret=self.server.fake_salt_secret,
        )

    def _features_before_auth(self) -> list[Element]:
        features: list[Element] = []
        if self._starttls_offered():
            features.append(P.starttls_feature(self._tls_mode() == "starttls_required"))
        mechs = self.sasl_mechanisms()
        if mechs:
            features.append(P.mechanisms_feature(mechs))
            if self.conn.tls is not None:
                features.append(P.channel_binding_feature(self.conn.tls.channel_binding_types()))
        result: list[Element] = self.server.hooks.fold(H.C2S_PREAUTH_FEATURES, features, self)
        self.negotiator.offered(result)
        return result

    def _on_not_authorized(self, el: Element) -> None:
        # RFC 6120 §6.4.1 / §7.1: nothing but negotiation before the session exists.
        raise StreamError("not-authorized")

    def _on_starttls(self, el: Element) -> None:
        if not self._starttls_offered() or self.tls_config is None:
            # RFC 6120 §5.4.2.2: STARTTLS not offered -> <failure/> and close.
            self.send(Element("failure", ns.TLS))
            self.close()
            return
        self.send(Element("proceed", ns.TLS))
        self.conn.start_tls(self.tls_config)
        self._goto(S.WAIT_FOR_STREAM)
        self.allow_certificate_review()

    def allow_certificate_review(self) -> None:
        """Time for a person to look at a certificate no client can verify before the
        client opens the stream over TLS (RFC 6120 §5.4.3.3: it restarts the stream only
        once it trusts the certificate). libpurple (Pidgin, finch) asks "Accept certificate
        for localhost?" at that point and waits; with ``state_timeout`` (5 s) the stream had
        ended with ``connection-timeout`` before anyone could click. Only for a self-signed
        certificate (the embedded default's): a verifiable one needs no person."""
        if self.tls_config is not None and getattr(self.tls_config, "self_signed", False):
            self.extend_state_deadline(CERTIFICATE_REVIEW_SECONDS)

    def _on_preauth_iq(self, iq: Element) -> Awaitable[None]:
        return self._preauth_iq(iq)

    async def _preauth_iq(self, iq: Element) -> None:
        # XEP-0077 in-band registration and the like, before authentication.
        handled = await self.server.hooks.fold_async(H.C2S_PREAUTH_IQ, False, self, iq)
        if not handled:
            self.stream_error(StreamError("not-authorized"))

    # -- SASL (RFC 6120 §6) and SASL2 (XEP-0388) ----------------------------------------------
    def _offered_mechanism(self, name: str) -> Any:
        mechanisms = self.sasl_mechanisms()
        if name in mechanisms:
            if name not in sasl.SUPPORTED_MECHANISMS:
                # Offered by a module (mod_auth_token's X-OAUTH), which also provides the
                # credentials.
                return self.server.hooks.fold(H.SASL_MODULE_MECHANISM, None, self, name)
            return sasl.create_mechanism(name, self.sasl_context(mechanisms))
        return None

    def _inline_mechanism(self, name: str) -> Any:
        mechanism = self._offered_mechanism(name)
        if mechanism is not None:
            return mechanism
        # Mechanisms offered only inline (FAST's HT-*, XEP-0484 §3.1) come from modules,
        # which then also provide the credentials.
        sasl2 = self.negotiator.sasl2
        return self.server.hooks.fold(H.SASL2_MECHANISM, None, self, name, sasl2)

    def _on_sasl_auth(self, el: Element) -> Awaitable[None] | None:
        self.credential_source = None
        self.module_state.pop(LOGIN_ANON_KEY, None)
        self.module_state.pop(IN_THE_CLEAR_KEY, None)
        return self._run(self.negotiator.auth(el, self._offered_mechanism,
                                              self._tls_required_but_missing()))

    def _on_sasl2_authenticate(self, el: Element) -> Awaitable[None] | None:
        if not self.negotiator.sasl2_offered:
            raise StreamError("not-authorized")  # XEP-0388: only when offered
        self.credential_source = None
        self.module_state.pop(LOGIN_ANON_KEY, None)
        self.module_state.pop(IN_THE_CLEAR_KEY, None)
        self.user_agent = N.user_agent(el) or self.user_agent
        self.early_data_auth = self.in_early_data
        return self._run(self.negotiator.authenticate(el, self._inline_mechanism,
                                                      self._tls_required_but_missing()))

    def _on_sasl_response(self, el: Element) -> Awaitable[None] | None:
        if not self.negotiator.accepts(el, "response"):
            raise StreamError("not-authorized")
        return self._run(self.negotiator.response(el))

    def _on_sasl_abort(self, el: Element) -> Awaitable[None] | None:
        if not self.negotiator.accepts(el, "abort"):
            raise StreamError("not-authorized")
        return self._run(self.negotiator.abort())

    async def _authenticated(self, result: sasl.Success) -> None:
        """The mechanism accepted the client: the account's access rules decide."""
        domain = self.domain or self.server.default_domain
        login_anon = bool(self.module_state.pop(LOGIN_ANON_KEY, False))
        anonymous = login_anon or self.negotiator.mechanism_name == "ANONYMOUS"
        in_the_clear: str | None = self.module_state.pop(IN_THE_CLEAR_KEY, None)
        try:
            user = JID(result.username, domain, None)
        except (InvalidJID, ValueError):
            self._run(self.negotiator.fail("not-authorized"))
            return
        if not self.server.is_local_domain(domain):
            # The domain was disabled (or removed) after this stream was opened to it: its
            # users are refused like a disabled account (RFC 6120 §6.5.1, temporarily:
            # enableDomain lets them in again), not logged in to a domain nobody serves.
            self._run(self.negotiator.fail("account-disabled", "domain disabled"))
            return
        allowed = self.opts.get("allowed_auth_methods")
        pki = "pki" in self.auth.methods and (not allowed or "pki" in allowed)
        if self.negotiator.mechanism_name == "EXTERNAL" and not pki:
            # MongooseIM 6.4's ldap method with SASL EXTERNAL: the certificate names the user
            # and the directory must know them (the same search as for PLAIN, no bind); so
            # too where pki is enabled but not on this listener (allowed_auth_methods).
            try:
                known = await self._in_time(self.auth.others["ldap"].user_exists(user))
            except AuthUnavailable:
                self._run(self.negotiator.fail("temporary-auth-failure"))
                return
            if not known:
                self._run(self.negotiator.fail("not-authorized", "not in the directory"))
                return
        if not self.server.access.allows("c2s", user.local, domain, None, domain) \
                or not self.server.access_allows(self.opts.get("access") or "all", user):
            self._run(self.negotiator.fail("not-authorized", "access denied"))
            return
        if anonymous and not self.server.auth.anonymous_login(user, chosen_name=login_anon):
            self._run(self.negotiator.fail("not-authorized", "this name is in use"))
            return
        self.user = user
        self.anonymous = anonymous
        self.server.auth_failures.succeeded(str(user.bare))
        if in_the_clear is not None and not anonymous:
            self.server.spawn(self.auth.store_as_scram(user, in_the_clear))
        log.info("c2s_auth_success user=%s mech=%s peer=%s", user,
                 self.negotiator.mechanism_name, self.conn.peer)
        if self.negotiator.sasl2 is not None:
            await self._sasl2_success(result)
            return
        self._run(self.negotiator.legacy_success(result))

    async def _sasl2_success(self, result: sasl.Success) -> None:
        """XEP-0388 §2.6.3: one <success/> says who the client is, carries what the inline
        requests produced (XEP-0198 resumption, XEP-0386 binding, XEP-0484 token), and the
        stream goes on without a restart. Upgrade tasks the client asked for (XEP-0480)
        come first, each announced by a <continue/>."""
        request = self.negotiator.finish()
        upgrade = await self._upgrade_tasks(result, request)
        if upgrade is not None:
            if self.fsm.state is not S.WAIT_FOR_SASL_RESPONSE:
                self._goto(S.WAIT_FOR_SASL_RESPONSE)
            self.module_state[UPGRADE_KEY] = upgrade
            self.send(N.sasl2_continue(result, upgrade.tasks[0]))
            return
        await self._sasl2_complete(result, request)

    async def _sasl2_complete(self, result: sasl.Success, request: Element) -> None:
        assert self.user is not None
        self.credential_source = None
        # Modules act on their inline requests first: FAST issues or rotates tokens, stream
        # management may take over a waiting session (then we are bound already).
        extra: list[Element] = await self.server.hooks.fold_async(H.SASL2_SUCCESS, [], self,
                                                                  request)
        if self.fsm.state is S.CLOSED:
            return
        resumed = self.fsm.state is S.SESSION_ESTABLISHED or any(
            el.name == "resumed" and el.xmlns == ns.SM for el in extra)  # from another node
        bound: Element | None = None
        bind = request.find("bind", ns.BIND2)
        if not resumed and bind is not None and ns.BIND2 in self.negotiator.sasl2_inline:
            bound = await self._bind2(bind)
            if bound is None:
                return  # refused: the stream is gone
        identity = self.jid if self.jid is not None else self.user
        success = N.sasl2_success(result, identity, bound, extra)
        if resumed:
            # XEP-0198 inline resumption: the session exists already; what the client had
            # not acknowledged follows the <success/>.
            self.send(success)
            self._resumed()
            return
        if bound is not None:
            self._goto(S.SESSION_ESTABLISHED)
            self.send(success)
            self.deliver_inherited()  # as after a bind result (``_bind``)
            self._session_ready()
            return
        self.send(success)
        # XEP-0388 §2.6.3: no restart; the post-authentication features come right away.
        self._goto(S.WAIT_FOR_FEATURE_AFTER_AUTH)
        self.send(P.features_element(self._features_after_auth()))

    # -- SASL upgrade tasks (XEP-0480) --------------------------------------------------------
    def sasl2_upgrades(self) -> list[str]:
        """XEP-0480 §2: the upgrade tasks offered to this stream: one per stronger SCRAM hash
        of ``password.hash``, when accounts are kept here as SCRAM records, and only over
        TLS (SaltedPassword lets whoever reads it log in: never in the clear)."""
        auth = self.auth
        if not self.is_tls or auth.password_format != "scram" \
                or not set(auth.methods) & STORED_METHODS:
            return []
        return [t for t in (N.upgrade_task(h) for h in auth.hashes) if t is not None]

    async def _upgrade_tasks(self, result: sasl.Success, request: Element) -> _Upgrade | None:
        """The tasks both asked for and offered whose hash the account lacks (accounts
        moved in with SHA-1 keys only, docs/moving-in.md); None when there are none."""
        offered = self.sasl2_upgrades()
        wanted = [t for t in N.requested_upgrades(request) if t in offered]
        if not wanted or self.user is None or self.anonymous:
            return None
        try:
            record = await self.server.storage.get_user(self.user.domain, self.user.local or "")
        except StorageError:
            log.warning("c2s_sasl2_upgrade_storage_unavailable user=%s", self.user)
            return None  # the login stands; the upgrade waits for another day
        if record is None or not is_scram_record(record.pass_details):
            return None
        assert record.pass_details is not None
        keys = parse_scram_record(record.pass_details)
        tasks = [t for t in wanted if N.task_hash(t) not in keys]
        if not tasks:
            return None
        iterations = next(iter(keys.values())).iterations
        return _Upgrade(result, request, tasks, record.pass_details, iterations)

    def _upgrade_failed(self, condition: str, text: str) -> None:
        """XEP-0388 §2.6.4: a failed task fails the authentication."""
        self.module_state.pop(UPGRADE_KEY, None)
        log.info("c2s_sasl2_upgrade_failed user=%s condition=%s", self.user, condition)
        self.user = None
        self.send(P.sasl2_failure(condition, text))
        self._goto(S.WAIT_FOR_FEATURE_BEFORE_AUTH)

    def _on_sasl2_next(self, el: Element) -> None:
        upgrade: _Upgrade | None = self.module_state.get(UPGRADE_KEY)
        if upgrade is None or upgrade.salt is not None:
            raise StreamError("not-authorized")  # no task was announced
        if el.attrs.get("task") != upgrade.tasks[0]:
            self._upgrade_failed("malformed-request", f"expected task {upgrade.tasks[0]}")
            return
        # XEP-0480 §4: a fresh salt, and the record's iteration count (one count for every
        # hash of a record, as MongooseIM serializes them).
        upgrade.salt = os.urandom(SALT_LENGTH)
        self.send(N.scram_upgrade_salt(upgrade.salt, upgrade.iterations))

    def _on_sasl2_task_data(self, el: Element) -> Awaitable[None] | None:
        upgrade: _Upgrade | None = self.module_state.get(UPGRADE_KEY)
        if upgrade is None or upgrade.salt is None:
            raise StreamError("not-authorized")  # no task under way
        return self._store_upgrade(upgrade, el)

    async def _store_upgrade(self, upgrade: _Upgrade, el: Element) -> None:
        assert self.user is not None and upgrade.salt is not None
        hash_name = N.task_hash(upgrade.tasks[0])
        assert hash_name is not None
        size = hashlib.new(hashlib_name(hash_name)).digest_size
        salted = N.scram_upgrade_hash(el, size)
        if salted is None:
            self._upgrade_failed("malformed-request",
                                 f"expected <hash/> with a base64 SaltedPassword of {size} bytes")
            return
        keys = parse_scram_record(upgrade.record)
        keys[hash_name] = keys_from_salted(hash_name, salted, upgrade.salt, upgrade.iterations)
        record = format_scram_record(keys)
        try:
            current = await self.server.storage.get_user(self.user.domain, self.user.local or "")
            # Stored only over the record the login was checked against: a password changed
            # meanwhile must not get keys of the old one.
            if current is not None and current.pass_details == upgrade.record:
                await self.server.storage.set_password(self.user.domain, self.user.local or "",
                                                       None, record)
                upgrade.record = record
                log.info("c2s_sasl2_upgraded user=%s hash=%s", self.user, hash_name)
        except StorageError:
            self._upgrade_failed("temporary-auth-failure", "the account could not be updated")
            return
        if self.fsm.state is S.CLOSED:
            return
        upgrade.tasks.pop(0)
        upgrade.salt = None
        if upgrade.tasks:
            self.send(N.sasl2_continue(sasl.Success(upgrade.result.username), upgrade.tasks[0]))
            return
        self.module_state.pop(UPGRADE_KEY, None)
        await self._sasl2_complete(upgrade.result, upgrade.request)

    # -- after authentication: binding (RFC 6120 §7, XEP-0386) --------------------------------
    def _features_after_auth(self) -> list[Element]:
        features = [P.bind_feature()]
        if self.opts.get("backwards_compatible_session", True):
            features.append(P.session_feature())
        result: list[Element] = self.server.hooks.fold(H.C2S_STREAM_FEATURES, features, self)
        return result

    def _on_bind(self, iq: Element) -> Awaitable[None] | None:
        if iq.find("bind", ns.BIND) is None:
            raise StreamError("not-authorized")
        return self._bind(iq)

    def _on_stream_element(self, el: Element) -> Awaitable[None] | None:
        if el.xmlns == ns.SM and el.name == "resume" and self.server.hooks.has(H.C2S_RESUME):
            return self._resume_session(el)  # XEP-0198 §5, after legacy authentication
        if el.xmlns != ns.CLIENT and self.server.hooks.fold(H.C2S_STREAM_ELEMENT, False,
                                                             self, el):
            return None
        raise StreamError("not-authorized")

    async def _resume_session(self, resume: Element) -> None:
        """XEP-0198 §5: the module answers <resumed/> (this stream then continues the old
        session, maybe brought from another node) or <failed/>; what the old stream had not
        had acknowledged follows <resumed/>. The stream reads nothing more meanwhile."""
        answer: Element | None = await self.server.hooks.fold_async(H.C2S_RESUME, None, self,
                                                                    resume)
        if answer is None:
            raise StreamError("not-authorized")
        if self.fsm.state is S.CLOSED:
            return
        self.send(answer)
        if answer.name == "resumed":
            self._resumed()

    def _resumed(self) -> None:
        """XEP-0198 §5: <resumed/> is written; what the old stream had not had acknowledged
        follows (mod_stream_management), then what arrives. A session resumed from another
        node (``enter_moved``) has its stream established only now: nothing the router
        delivered to it was written before the answer."""
        if self.fsm.state is not S.SESSION_ESTABLISHED:
            self._goto(S.SESSION_ESTABLISHED)
        self.server.hooks.fold(H.SESSION_RESUMPTION_ANSWERED, None, self)

    async def _bind(self, iq: Element) -> None:
        assert self.user is not None
        full = N.bind_request(iq, self.user)
        if isinstance(full, StanzaError):
            self.send(error_reply(iq, full))
            return
        elsewhere = await self.server.sessions.count_elsewhere(full)
        if self.fsm.state is S.CLOSED:
            # The stream ended while other nodes were asked (sm_backend = "redis"): no
            # session to open (registering it would leave a session without a connection).
            return
        error = self._open_session(full, elsewhere)
        if error is not None:
            self.send(error_reply(iq, error))
            return
        self._goto(S.SESSION_ESTABLISHED)
        # The result leaves before the modules load the session's state (the roster, the
        # blocklist ...): the client reads it and sends its next stanza while they do, and
        # that stanza is handled only once they are done (the stream is busy until this step
        # ends). Written at the end, the client would wait for them and then for the round
        # trip on top.
        self.send(N.bind_result(iq, full))
        # What the session this one replaced had not had acknowledged comes first (XEP-0198
        # §5, ``replaced_by``): before any stanza routed to this one while modules load.
        self.deliver_inherited()
        self.conn.flush_now()
        await self.server.hooks.run_together(H.SESSION_OPENED, None, self)
        self._session_ready()

    async def _bind2(self, bind: Element) -> Element | None:
        """XEP-0386 §3: bind inside the SASL2 <authenticate/>. Returns <bound/>, or None when
        the stream ended."""
        assert self.user is not None
        full = N.bind2_resource(bind, self.user)
        elsewhere = await self.server.sessions.count_elsewhere(full)
        if self.fsm.state is S.CLOSED:
            # The stream ended while other nodes were asked (sm_backend = "redis"): no
            # session to open (registering it would leave a session without a connection).
            return None
        error = self._open_session(full, elsewhere, same_client=True)
        if error is not None:
            self.stream_error(StreamError("policy-violation", error.text))
            return None
        self._end_earlier_sessions_of_client()
        await self.server.hooks.run_together(H.SESSION_OPENED, None, self)
        children: list[Element] = await self.server.hooks.fold_async(H.BIND2_BIND, [], self,
                                                                     bind)
        return Element("bound", ns.BIND2, {}, list(children))

    def _session_ready(self) -> None:
        self.server.sm_session_opened(self)
        log.info("c2s_session_opened jid=%s peer=%s", self.jid, self.conn.peer)
