"""Accounts and authentication methods (``[auth]``): ``rdbms``/``internal`` (both stored in the
configured database here) and ``anonymous`` (accounts that live as long as their session).

Passwords are stored as SCRAM keys (``password.format = "scram"``, the default): salt,
iterations, stored key and server key per configured hash, so the database never holds a
password (RFC 5802 §3). ``format = "plain"`` keeps the password itself, as in MongooseIM.

The service sits below the server core (DESIGN §1): what it needs from the server (the
``[auth]`` section, the storage, a way to run background work and to tell the rest of the
server that an account came or went) is handed to it by ``Server``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any

from suricate import sasl
from suricate.auth.methods import (
    AuthMethod,
    AuthUnavailable,
    DummyMethod,
    ExternalMethod,
    HttpMethod,
    JwtMethod,
    NotSupported,
)
from suricate.instrument import Instrumentation
from suricate.instrument.events import (
    AUTH_ANONYMOUS_REGISTER_USER,
    AUTH_ANONYMOUS_UNREGISTER_USER,
    AUTH_AUTHORIZE,
    AUTH_CHECK_PASSWORD,
    AUTH_DOES_USER_EXIST,
    AUTH_REGISTER_USER,
    AUTH_TRY_REGISTER,
    AUTH_UNREGISTER_USER,
    EventSpec,
)
from suricate.jid import JID
from suricate.sasl.passwords import (
    is_scram_record,
    make_scram_record,
    verify_password,
    waste_a_check,
)
from suricate.storage import Storage, StorageError

log = logging.getLogger("suricate.auth")

STORED_METHODS = frozenset({"rdbms", "internal"})
#: Methods that only check a password (MongooseIM 6.4: PLAIN only) unless they can hand out
#: credentials (``AuthMethod.credentials``: http with get_password).
EXTERNAL_METHODS = frozenset({"dummy", "http", "jwt", "external", "ldap"})

#: Methods that take SASL EXTERNAL with a verified client certificate (MongooseIM 6.4): pki
#: accepts whom the certificate names; ldap also wants the directory to know them.
CERT_METHODS = frozenset({"pki", "ldap"})

#: Told about an account that was created or removed (the server folds its register_user /
#: remove_user hooks).
AccountEvent = Callable[[JID], Awaitable[None]]
#: Told that an account's password changed: the account and the session (a full JID) that
#: changed it in band, None when it was not one of the account's sessions (the server ends the
#: others, ``Server.password_changed``).
PasswordEvent = Callable[[JID, "JID | None"], Awaitable[None]]
#: Told that an account was removed: the account and the session (a full JID) that asked in
#: band, None when it was not one of the account's sessions (the server ends the others on
#: every node, ``Server.account_removed``; the one that asked ends after its answer).
RemovedEvent = Callable[[JID, "JID | None"], Awaitable[None]]
#: Told that an account is about to be removed; answers what to run once it is gone
#: (the server folds its removing_user hook).
RemovalEvent = Callable[[JID], Awaitable[list[Callable[[], None]]]]
#: Runs a coroutine in the background and keeps track of it (``Server.spawn``).
Spawn = Callable[[Coroutine[Any, Any, Any]], object]


class AuthService:
    def __init__(self, cfg: Mapping[str, Any], storage: Storage, spawn: Spawn,
                 registered: AccountEvent, removed: AccountEvent,
                 module_tables: Callable[[], Sequence[str]] = tuple,
                 http_pools: Mapping[str, Mapping[str, Any]] | None = None,
                 ldap_pools: Mapping[str, Mapping[str, Any]] | None = None,
                 instrument: Instrumentation | None = None,
                 password_changed: PasswordEvent | None = None,
                 removing: RemovalEvent | None = None,
                 account_removed: RemovedEvent | None = None) -> None:
        self.cfg = cfg
        # 6.4's auth_* events, labelled with the domain (the handlers map it to its host
        # type); the no-op base when the server measures nothing.
        self.instrument = instrument if instrument is not None else Instrumentation()
        self.storage = storage
        self._spawn = spawn
        self._registered = registered
        self._removed = removed
        self._password_changed = password_changed
        self._removing = removing
        self._account_removed = account_removed
        # The enabled modules' account tables: removed with the account, in one transaction.
        self._module_tables = module_tables
        self.methods: list[str] = list(cfg["methods"])
        password = cfg["password"]
        self.password_format: str = password["format"]
        self.hashes: list[str] = list(password["hash"])
        self.scram_iterations: int = password["scram_iterations"]
        self.sasl_mechanisms: list[str] = list(cfg["sasl_mechanisms"])
        # ``mechanisms`` answers by question (tls, cb types, allowed methods, client cert).
        self._mechanisms: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self.anonymous_opts: Mapping[str, Any] = cfg.get("anonymous") or {}
        #: 6.4's ``anonymous.protocol = "login_anon"`` (or ``"both"``): PLAIN logs in any
        #: name no other method knows, with any password, as an anonymous account. (6.4
        #: also answers SCRAM with an empty password for it; empty passwords never log in
        #: here.)
        self.login_anon = "anonymous" in self.methods and self.anonymous_opts.get(
            "protocol", "sasl_anon") in ("login_anon", "both")
        self._anonymous: dict[JID, int] = {}
        # The methods answered by something else than our database, by name, in order.
        self.others: dict[str, AuthMethod] = {}
        for name in self.methods:
            if name in EXTERNAL_METHODS:
                self.others[name] = self._make_method(name, http_pools or {}, ldap_pools or {})
        #: Services of the host types with their own ``[[host_config]]`` auth (6.4), by host
        #: type; ``host_type_of`` maps a domain to its host type (set by the server).
        self.hosts: dict[str, AuthService] = {}
        self.host_type_of: Callable[[str], str] = str
        # Whether a method can give SCRAM (or DIGEST) credentials; without one: PLAIN only.
        self.has_credentials = any(m in STORED_METHODS or (m in self.others
                                                          and self.others[m].credentials)
                                   for m in self.methods)

    def _make_method(self, name: str, pools: Mapping[str, Mapping[str, Any]],
                     ldap_pools: Mapping[str, Mapping[str, Any]]) -> AuthMethod:
        opts = self.cfg.get(name) or {}
        if name == "ldap":
            from suricate.auth.ldap import LdapMethod  # ldap3 only when configured

            return LdapMethod(opts, ldap_pools)
        if name == "dummy":
            return DummyMethod(opts)
        if name == "http":
            return HttpMethod(opts, pools["auth"], self.password_format == "scram",
                              lambda pw: make_scram_record(pw, self.hashes,
                                                           self.scram_iterations))
        if name == "jwt":
            return JwtMethod(opts)
        return ExternalMethod(opts)

    def for_domain(self, domain: str) -> AuthService:
        """The service answering for ``domain``: its host type's own (``[[host_config]]``
        with an ``auth`` table) or this one."""
        if not self.hosts:
            return self
        return self.hosts.get(self.host_type_of(domain), self)

    async def start(self) -> None:
        for method in self.others.values():
            await method.start()
        for service in self.hosts.values():
            await service.start()

    async def stop(self) -> None:
        for method in self.others.values():
            await method.stop()
        for service in self.hosts.values():
            await service.stop()

    @property
    def checks_plain(self) -> bool:
        """PLAIN goes through ``check_password`` (the methods in order), not through a
        credential record, when a method that only checks passwords is configured."""
        return bool(self.others) or self.login_anon

    # -- SASL ------------------------------------------------------------------------------
    def mechanisms(self, tls: bool, cb_types: list[str], listener: Mapping[str, Any],
                   client_cert: bool = False) -> list[str]:
        """``client_cert``: the client presented a certificate the TLS handshake verified.

        A pure function of the arguments and this service's settings, asked two or three
        times by each login: kept per distinct question (a listener has only a few)."""
        allowed = listener.get("allowed_auth_methods")
        key = (tls, tuple(cb_types), tuple(allowed) if allowed else None, client_cert)
        names = self._mechanisms.get(key)
        if names is None:
            if len(self._mechanisms) >= 64:
                self._mechanisms.clear()  # (bounded whatever the callers ask)
            names = self._mechanisms[key] = tuple(
                self._find_mechanisms(tls, cb_types, allowed, client_cert))
        return list(names)

    def _find_mechanisms(self, tls: bool, cb_types: list[str], allowed: Any,
                         client_cert: bool) -> list[str]:
        methods = set(self.methods)
        if allowed:
            methods &= set(allowed)
        names = sasl.mechanism_names(self.sasl_mechanisms, tls, cb_types, self.password_format,
                                     self.hashes)
        # login_anon checks a PLAIN password like dummy does (any is right): PLAIN over TLS.
        login_anon = self.login_anon and "anonymous" in methods
        if not methods & (STORED_METHODS | EXTERNAL_METHODS) and not login_anon:
            names = [n for n in names if n == "ANONYMOUS"]
        elif not (methods & STORED_METHODS or any(self.others[m].credentials
                                                   for m in methods & self.others.keys())):
            # MongooseIM 6.4: dummy, jwt, external and ldap only check a password: PLAIN, and
            # (the password travels in the clear inside SASL) only over TLS.
            names = [n for n in names if n == "ANONYMOUS" or (n == "PLAIN" and tls)]
        anonymous_sasl = "anonymous" in methods and self.anonymous_opts.get(
            "protocol", "sasl_anon") in ("sasl_anon", "both")
        if not anonymous_sasl:
            names = [n for n in names if n != "ANONYMOUS"]
        # 6.4's pki method (and ldap, which then looks the user up): SASL EXTERNAL with a
        # verified client certificate, and only then.
        names = [n for n in names if n != "EXTERNAL"]
        if methods & CERT_METHODS and tls and client_cert:
            names.append("EXTERNAL")
        return names

    async def credentials(self, username: str, domain: str,
                          only: Collection[str] | None = None) -> sasl.CredentialRecord | None:
        """The account's credential record from the first method holding it; ``only``: the
        methods a c2s listener allows (``allowed_auth_methods``), None for all."""
        if self.hosts and self.for_domain(domain) is not self:
            return await self.for_domain(domain).credentials(username, domain, only)
        if not self.instrument.enabled:
            return await self._credentials(username, domain, only)
        start = time.perf_counter()
        try:
            return await self._credentials(username, domain, only)
        finally:
            self._timed(AUTH_AUTHORIZE, domain, start)

    def _timed(self, event: EventSpec, domain: str, start: float) -> None:
        self.instrument.emit(event, {"host_type": domain},
                             {"count": 1, "time": int((time.perf_counter() - start) * 1e6)})

    def _count(self, event: EventSpec, domain: str) -> None:
        if self.instrument.enabled:
            self.instrument.emit(event, {"host_type": domain}, {"count": 1})

    def _tried(self, only: Collection[str] | None) -> list[str]:
        """The methods to try, in order: all, or those a listener allows (6.4's
        ``allowed_auth_methods``: the others must not log anyone in through it)."""
        return self.methods if only is None else [m for m in self.methods if m in only]

    async def _credentials(self, username: str, domain: str,
                           only: Collection[str] | None) -> sasl.CredentialRecord | None:
        try:
            jid = JID(username, domain, None)
        except ValueError:
            return None
        unavailable: AuthUnavailable | None = None
        for method in self._tried(only):
            if method in STORED_METHODS:
                record = await self.storage.get_user(jid.domain, jid.local or "")
                if record is not None:
                    return sasl.CredentialRecord(password=record.password,
                                                 pass_details=record.pass_details)
            elif method in self.others and self.others[method].credentials:
                try:
                    stored = await self.others[method].get_password(jid)
                except AuthUnavailable as exc:
                    # The next methods may hold the account (as for a PLAIN check); if none
                    # does, the client hears temporary-auth-failure, not "no such user".
                    unavailable = exc
                    continue
                if stored is not None:
                    if is_scram_record(stored):
                        return sasl.CredentialRecord(password=None, pass_details=stored)
                    return sasl.CredentialRecord(password=stored)
        if unavailable is not None:
            raise unavailable
        return None

    async def plain_credentials(self, username: str, domain: str, password: str,
                                only: Collection[str] | None = None
                                ) -> sasl.CredentialRecord | None:
        """For PLAIN with password-checking methods: a record that accepts ``password`` when
        one of the methods (``only`` those, when given), tried in order, accepts it; None
        otherwise. Raises AuthUnavailable when no method accepted and one of them could not
        be asked."""
        if self.hosts and self.for_domain(domain) is not self:
            return await self.for_domain(domain).plain_credentials(username, domain, password,
                                                                   only)
        if not self.instrument.enabled:
            return await self._plain_credentials(username, domain, password, only)
        start = time.perf_counter()
        try:
            return await self._plain_credentials(username, domain, password, only)
        finally:
            self._timed(AUTH_AUTHORIZE, domain, start)

    async def _plain_credentials(self, username: str, domain: str, password: str,
                                 only: Collection[str] | None) -> sasl.CredentialRecord | None:
        try:
            jid = JID(username, domain, None)
        except ValueError:
            return None
        # 6.4: a login's password check is auth_authorize, not auth_check_password.
        if await self._check_password(jid, password, only):
            return sasl.CredentialRecord(password=password)
        if "anonymous" in self._tried(only) and await self._login_anon(jid):
            return sasl.CredentialRecord(password=password, anonymous=True)  # any password
        return None

    async def _login_anon(self, jid: JID) -> bool:
        """Whether ``login_anon`` takes this name: no other method knows it (one that
        cannot answer raises AuthUnavailable: the name may be an account's), and without
        ``allow_multiple_connections`` nobody is logged in with it yet."""
        if not self.login_anon:
            return False
        if jid.bare in self._anonymous:
            return bool(self.anonymous_opts.get("allow_multiple_connections"))
        return not await self._account_exists(jid)

    # -- password format: plain -> scram --------------------------------------------------
    def in_the_clear(self, password: str | None, pass_details: str | None) -> bool:
        """Whether a stored account's password is kept in the clear although
        ``password.format`` is now "scram" (the operator moved from "plain")."""
        return self.password_format == "scram" and bool(password) and not pass_details \
            and not is_scram_record(password)

    async def store_as_scram(self, jid: JID, password: str) -> None:
        """After a login proved ``password``: the account's row, still in the clear, becomes
        a SCRAM record (RFC 5802 §3: the server keeps no password) of ``password.hash``,
        so moving ``password.format`` from "plain" to "scram" needs no password reset.
        Only over the same row: a password changed meanwhile is left alone."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).store_as_scram(jid, password)
        if not set(self.methods) & STORED_METHODS:
            return None
        local = jid.local or ""
        try:
            row = await self.storage.get_user(jid.domain, local)
            if row is None or row.pass_details or row.password != password:
                return None
            # PBKDF2 for each hash: off the event loop.
            record = await asyncio.to_thread(make_scram_record, password, self.hashes,
                                             self.scram_iterations)
            await self.storage.set_password(jid.domain, local, None, record)
        except StorageError:
            log.warning("auth_store_as_scram_failed jid=%s", jid.bare)  # next login, then
            return None
        log.info("auth_password_stored_as_scram jid=%s", jid.bare)
        return None

    # -- accounts --------------------------------------------------------------------------
    def _password_fields(self, password: str) -> tuple[str | None, str | None]:
        if self.password_format == "plain":
            return password, None
        return None, make_scram_record(password, self.hashes, self.scram_iterations)

    def _account_method(self) -> str | None:
        """Where accounts are created, changed and removed: the first method able to
        (MongooseIM 6.4 tries the methods in order; dummy and jwt hold no accounts)."""
        for method in self.methods:
            if method in STORED_METHODS or method in ("http", "external"):
                return method
        return None

    @property
    def accounts_storable(self) -> bool:
        """Whether a configured method can create accounts (in-band registration)."""
        return self._account_method() is not None

    async def register(self, jid: JID, password: str) -> bool:
        """Create the account; False if it exists already."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).register(jid, password)
        if not self.instrument.enabled:
            return await self._register(jid, password)
        start = time.perf_counter()
        try:
            created = await self._register(jid, password)
        finally:
            self._timed(AUTH_TRY_REGISTER, jid.domain, start)
        if created:
            self._count(AUTH_REGISTER_USER, jid.domain)
        return created

    async def _register(self, jid: JID, password: str) -> bool:
        assert jid.local is not None
        if jid.bare in self._anonymous:
            # An anonymous account (login_anon lets guests pick their name) holds it: it
            # exists (6.4 answers conflict too), and its purge would take the new account.
            return False
        method = self._account_method()
        if method in self.others:
            created = await self.others[method].register(jid, password)
            if created:
                await self._registered(jid)
                log.info("auth_register_user jid=%s method=%s", jid, method)
            return created
        if method is None:
            return False
        limit = self.cfg.get("max_users_per_domain")
        if limit is not None and await self.storage.count_users(jid.domain) >= limit:
            if await self.storage.user_exists(jid.domain, jid.local):
                return False  # taken: a conflict (XEP-0077 §3.1) before the limit, as in 6.4
            raise TooManyUsers(jid.domain)
        plain, details = self._password_fields(password)
        created = await self.storage.create_user(jid.domain, jid.local, plain, details)
        if created:
            await self._registered(jid)
            log.info("auth_register_user jid=%s", jid)
        return created

    async def set_password(self, jid: JID, password: str, by: JID | None = None) -> bool:
        """Change the account's password; ``by``: the account's session that asked (XEP-0077
        §3.3), which the change leaves open. Every way in (in band, GraphQL, REST) comes
        here, so each ends the account's other sessions alike (``password_changed``)."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).set_password(jid, password, by)
        assert jid.local is not None
        method = self._account_method()
        if method in self.others:
            changed = await self.others[method].set_password(jid, password)
        elif method is None:
            return False
        else:
            plain, details = self._password_fields(password)
            changed = await self.storage.set_password(jid.domain, jid.local, plain, details)
        if changed:
            log.info("auth_password_changed jid=%s", jid.bare)
            if self._password_changed is not None:
                await self._password_changed(jid.bare, by)
        return changed

    async def remove(self, jid: JID, by: JID | None = None) -> bool:
        """Remove the account and its data; ``by``: the account's session that asked
        (XEP-0077 §3.2), left for the asker to end after its answer. Every way in (in band,
        GraphQL, REST, ad-hoc commands, the CLI through the server) comes here, so each ends
        the account's sessions on every node alike (``account_removed``)."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).remove(jid, by)
        assert jid.local is not None
        method = self._account_method()
        if method is None:
            return False
        # Read before the data goes (in the same transaction as the account), run after.
        after = await self._removing(jid.bare) if self._removing is not None else []
        if method in self.others:
            removed = await self.others[method].remove(jid)
            if removed:
                # The account's data kept here (roster, offline, ...) goes with it.
                await self.storage.remove_user(jid.domain, jid.local, self._module_tables())
        else:
            removed = await self.storage.remove_user(jid.domain, jid.local,
                                                     self._module_tables())
        if removed:
            self._count(AUTH_UNREGISTER_USER, jid.domain)
            await self._removed(jid)
            log.info("auth_unregister_user jid=%s", jid)
            for action in after:
                try:
                    action()
                except Exception:  # one module's failure must not hide the removal
                    log.exception("after_removal_failed jid=%s", jid)
            if self._account_removed is not None:
                try:
                    await self._account_removed(jid.bare, by)
                except Exception:  # the account is gone all the same (Redis away?)
                    log.exception("removed_sessions_not_ended jid=%s", jid)
        return removed

    async def check_password(self, jid: JID, password: str) -> bool:
        """The methods in order; the first that accepts wins (MongooseIM 6.4). Raises
        AuthUnavailable when none accepted and one could not be asked: the password may be
        right, the client should try again later rather than be told it is wrong."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).check_password(jid, password)
        if not self.instrument.enabled:
            return await self._check_password(jid, password)
        start = time.perf_counter()
        try:
            return await self._check_password(jid, password)
        finally:
            self._timed(AUTH_CHECK_PASSWORD, jid.domain, start)

    async def _check_password(self, jid: JID, password: str,
                              only: Collection[str] | None = None) -> bool:
        assert jid.local is not None
        unavailable: AuthUnavailable | None = None
        for method in self._tried(only):
            if method in STORED_METHODS:
                record = await self.storage.get_user(jid.domain, jid.local)
                if record is None and self.password_format == "scram":
                    # As long as a wrong password takes: no hint that the name is free.
                    waste_a_check(self.hashes, self.scram_iterations)
                if record is not None and verify_password(record.password, record.pass_details,
                                                          password):
                    if self.in_the_clear(record.password, record.pass_details):
                        self._spawn(self.store_as_scram(jid, password))
                    return True
            elif method in self.others:
                try:
                    if await self.others[method].check_password(jid, password):
                        return True
                except AuthUnavailable as exc:
                    unavailable = exc
        if unavailable is not None:
            raise unavailable
        return False

    async def user_exists(self, jid: JID) -> bool:
        if self.hosts and self.for_domain(jid.domain) is not self:
            return await self.for_domain(jid.domain).user_exists(jid)
        if not self.instrument.enabled:
            return await self._user_exists(jid)
        start = time.perf_counter()
        try:
            return await self._user_exists(jid)
        finally:
            self._timed(AUTH_DOES_USER_EXIST, jid.domain, start)

    async def _user_exists(self, jid: JID) -> bool:
        if jid.bare in self._anonymous:
            return True
        return await self._account_exists(jid)

    async def _account_exists(self, jid: JID) -> bool:
        """Whether a method other than anonymous knows the account."""
        assert jid.local is not None
        unavailable: AuthUnavailable | None = None
        for method in self.methods:
            if method in STORED_METHODS:
                if await self.storage.user_exists(jid.domain, jid.local):
                    return True
            elif method in self.others:
                try:
                    if await self.others[method].user_exists(jid):
                        return True
                except AuthUnavailable as exc:
                    unavailable = exc
        if unavailable is not None:
            raise unavailable
        return False

    # -- anonymous -------------------------------------------------------------------------
    def anonymous_login(self, jid: JID, chosen_name: bool = False) -> bool:
        """An anonymous session starts; False (refused) when the client chose the name
        (``login_anon``), someone is logged in with it already and
        ``allow_multiple_connections`` is off: checked again here, with no wait before
        the count below, since two logins may both have passed ``_login_anon`` meanwhile."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return self.for_domain(jid.domain).anonymous_login(jid, chosen_name)
        sessions = self._anonymous.get(jid.bare, 0)
        if sessions and chosen_name \
                and not self.anonymous_opts.get("allow_multiple_connections"):
            return False
        self._anonymous[jid.bare] = sessions + 1
        if not sessions:
            self._count(AUTH_ANONYMOUS_REGISTER_USER, jid.domain)
        return True

    def is_anonymous(self, jid: JID) -> bool:
        """``jid``'s account is a guest's (SASL ANONYMOUS) logged in now."""
        if self.hosts and self.for_domain(jid.domain) is not self:
            return self.for_domain(jid.domain).is_anonymous(jid)
        return jid.bare in self._anonymous

    def anonymous_logout(self, jid: JID) -> None:
        if self.hosts and self.for_domain(jid.domain) is not self:
            return self.for_domain(jid.domain).anonymous_logout(jid)
        count = self._anonymous.get(jid.bare, 0) - 1
        if count <= 0:
            if self._anonymous.pop(jid.bare, None) is not None:
                self._count(AUTH_ANONYMOUS_UNREGISTER_USER, jid.domain)
            # An anonymous account ends with its last session: it goes as a removed
            # account goes (MongooseIM 6.4 runs its anonymous_purge hook like remove_user).
            self._spawn(self._purge_anonymous(jid.bare))
        else:
            self._anonymous[jid.bare] = count

    async def _purge_anonymous(self, jid: JID) -> None:
        """Its data in one transaction, then the modules' remove_user work (room
        affiliations, pubsub subscriptions, ...) and the contacts told (RFC 6121 §2.5.2:
        the subscription requests it left are withdrawn rather than left pending)."""
        if jid in self._anonymous:
            return  # it logged in again meanwhile
        after = await self._removing(jid) if self._removing is not None else []
        await self.storage.remove_user(jid.domain, jid.local or "", self._module_tables())
        await self._removed(jid)
        for action in after:
            try:
                action()
            except Exception:  # one module's failure must not stop the others'
                log.exception("after_removal_failed jid=%s", jid)


__all__ = ["AuthService", "AuthUnavailable", "NotSupported", "STORED_METHODS", "TooManyUsers"]


class TooManyUsers(Exception):
    """``auth.max_users_per_domain`` is reached for this domain."""
