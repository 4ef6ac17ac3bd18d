"""The ``ldap`` auth method (MongooseIM 6.4 ``ejabberd_auth_ldap``): a read-only view of the
users of an LDAP directory.

A login is a search then a bind (RFC 4513 §5.2, simple authentication): the user's entry is
searched under ``base`` through the ``pool_tag`` pool (bound as ``rootdn``, or anonymously),
then the entry's DN is bound with the password given, through the ``bind_pool_tag`` pool whose
connections are used for nothing else (a bind changes who the connection is). The directory
never hands out a password or SCRAM keys, so only PLAIN (over TLS) works with this method.

ldap3 (pure Python) is synchronous: each request runs in a worker thread on a connection of
its own, at most ``workers`` at a time per pool. A directory that cannot be reached, or that
fails a request, raises ``AuthUnavailable`` (the client gets ``temporary-auth-failure``); the
pool then fails at once for ``connect_interval`` before trying again, so a dead directory does
not hold every login for a connection timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from suricate.auth.methods import AuthMethod, AuthUnavailable
from suricate.jid import JID

log = logging.getLogger("suricate.auth")

T = TypeVar("T")

#: Seconds to connect and to wait for an answer: a login waits for the directory.
TIMEOUT = 5  # an int: ldap3 packs it into SO_RCVTIMEO

#: RFC 4511 §4.1.9 result codes that mean "this password is wrong", not "the directory failed".
_INVALID_CREDENTIALS = 49
_WRONG_USER = frozenset({_INVALID_CREDENTIALS, 32, 34, 48, 50, 53})  # noSuchObject,
# invalidDNSyntax, inappropriateAuthentication, insufficientAccessRights, unwillingToPerform

#: The ``deref`` option (6.4's names) as ldap3 spells RFC 4511 §4.5.1.3's derefAliases.
DEREF = {"never": "NEVER", "searching": "SEARCH", "finding": "FINDING_BASE",
         "always": "ALWAYS"}


class LdapPool:
    """``[outgoing_pools.ldap.TAG]``: up to ``workers`` connections to the first server of
    ``servers`` that answers, bound as ``rootdn`` (anonymous when empty)."""

    def __init__(self, tag: str, cfg: Mapping[str, Any]) -> None:
        conn = cfg["connection"]
        self.tag = tag
        self.servers: list[str] = list(conn["servers"])
        self.port = int(conn["port"])
        self.rootdn = str(conn["rootdn"])
        self.password = str(conn["password"])
        self.tls: Mapping[str, Any] | None = conn.get("tls") if conn.get("encrypted") else None
        self.connect_interval = int(conn["connect_interval"]) / 1000
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(int(cfg["workers"]))
        self._down_until = 0.0

    def _tls(self) -> Any:
        import ldap3

        if self.tls is None:
            return None
        verify = ssl.CERT_NONE if self.tls.get("verify_mode") == "none" else ssl.CERT_REQUIRED
        return ldap3.Tls(validate=verify, ca_certs_file=self.tls.get("cacertfile"),
                         local_certificate_file=self.tls.get("certfile"),
                         local_private_key_file=self.tls.get("keyfile"),
                         local_private_key_password=self.tls.get("password"),
                         ciphers=self.tls.get("ciphers"))

    def _connect(self) -> Any:
        """The first of ``servers`` that answers (the others are fall-backs), bound as
        ``rootdn``. (ldap3's ServerPool sleeps 10 s between rounds: a login cannot wait.)"""
        import ldap3
        from ldap3.core.exceptions import LDAPException

        tls = self._tls()
        failure: Exception = AuthUnavailable(f"ldap pool {self.tag}: no server")
        for host in self.servers:
            # get_info=NONE: ldap3 would otherwise read the root DSE and the whole schema
            # after every bind (tens of milliseconds per login).
            server = ldap3.Server(host, port=self.port, use_ssl=tls is not None, tls=tls,
                                  connect_timeout=TIMEOUT, get_info=ldap3.NONE)
            conn = ldap3.Connection(server, user=self.rootdn or None,
                                    password=self.password or None, receive_timeout=TIMEOUT,
                                    raise_exceptions=False, read_only=True)
            try:
                bound = conn.bind()
            except (LDAPException, OSError) as exc:
                failure = exc
                continue
            if not bound:
                # A wrong rootdn/password is the operator's problem, never the user's.
                _unbind(conn)
                raise AuthUnavailable(f"ldap pool {self.tag}: bind as rootdn failed: "
                                      f"{conn.result.get('description')}")
            return conn
        raise failure

    def _run_on(self, conn: Any, work: Callable[[Any], T]) -> tuple[Any, T]:
        """In a worker thread: ``work`` on ``conn``; a reused connection the directory has
        dropped since (restart, idle timeout) is replaced once by a fresh one."""
        from ldap3.core.exceptions import LDAPException

        if conn is not None:
            try:
                return conn, work(conn)
            except (LDAPException, OSError):
                _unbind(conn)
        conn = self._connect()
        try:
            return conn, work(conn)
        except BaseException:
            _unbind(conn)
            raise

    async def run(self, work: Callable[[Any], T]) -> T:
        from ldap3.core.exceptions import LDAPException

        if time.monotonic() < self._down_until:
            raise AuthUnavailable(f"ldap pool {self.tag}: down, next attempt later")
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                conn, result = await asyncio.to_thread(self._run_on, conn, work)
            except (LDAPException, OSError, AuthUnavailable) as exc:
                self._down_until = time.monotonic() + self.connect_interval
                log.warning("auth_ldap_unavailable pool=%s error=%r", self.tag, exc)
                if isinstance(exc, AuthUnavailable):
                    raise
                raise AuthUnavailable(f"ldap pool {self.tag}") from exc
            self._idle.append(conn)
            return result

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            _unbind(conn)


def _unbind(conn: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection: nothing left to do
        conn.unbind()


def check_result(conn: Any, ok: bool) -> None:
    """A request that failed for another reason than "nothing found" is the directory's
    failure (busy, unavailable, a broken socket), not an answer."""
    from ldap3.core.exceptions import LDAPException

    if ok:
        return
    result = conn.result or {}
    if result.get("result") in (0, 32):  # success with no entry, noSuchObject (RFC 4511)
        return
    raise LDAPException(f"{result.get('description')}: {result.get('message')}")


def search(conn: Any, base: str, filter_: str, deref: str,
           attributes: list[str]) -> list[tuple[str, dict[str, list[str]]]]:
    """In a worker thread: the entries ``filter_`` finds under ``base`` (subtree), each as its
    DN and the ``attributes`` it has, by lower-case name, every value a string. A directory
    that fails the request raises (``check_result``); "nothing found" is an empty list."""
    ok = conn.search(base, filter_, search_scope="SUBTREE", dereference_aliases=deref,
                     attributes=attributes)
    check_result(conn, ok)
    found = []
    for entry in conn.response or []:
        if entry.get("type") != "searchResEntry":
            continue  # referrals (searchResRef) are not followed
        attrs = _lower_keys(entry.get("attributes") or {})
        found.append((str(entry["dn"]), {k: _values(v) for k, v in attrs.items()}))
    return found


def escape_value(value: str) -> str:
    """RFC 4515 §3: a value in a filter escapes ``*``, ``(``, ``)``, ``\\`` and NUL."""
    out = []
    for char in value:
        if char in "*()\\\0":
            out.append(f"\\{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def template_user(value: str, fmt: str) -> str | None:
    """The username in an attribute value held as ``fmt`` (``%u@example.org``,
    ``uid=%u,ou=people,dc=example,dc=com``), the rest compared without regard to case as
    DNs and mail addresses compare; None when the value is not of that form. The inverse of
    the ``%u`` substitution in ``uids`` and member formats (mod_vcard, mod_shared_roster_ldap)."""
    prefix, _, suffix = fmt.partition("%u")
    if len(value) <= len(prefix) + len(suffix):
        return None
    middle = value[len(prefix):len(value) - len(suffix)]
    if (prefix + middle + suffix).lower() != value.lower():
        return None
    return middle


class LdapMethod(AuthMethod):
    """``[auth.ldap]``: see the module docstring."""

    name = "ldap"

    def __init__(self, opts: Mapping[str, Any], pools: Mapping[str, Mapping[str, Any]]) -> None:
        self.base = str(opts["base"])
        self.uids: list[tuple[str, str]] = [(u["attr"], u["format"]) for u in opts["uids"]]
        self.filter = str(opts["filter"])
        self.dn_filter: Mapping[str, Any] | None = opts.get("dn_filter")
        self.local_filter: Mapping[str, Any] | None = opts.get("local_filter")
        self.deref = DEREF[str(opts["deref"])]
        self.search_pool = LdapPool(opts["pool_tag"], pools[opts["pool_tag"]])
        self.bind_pool = LdapPool(opts["bind_pool_tag"], pools[opts["bind_pool_tag"]])

    async def stop(self) -> None:
        self.search_pool.close()
        self.bind_pool.close()

    def user_filter(self, username: str) -> str:
        """Any of the ``uids`` attributes holding the username in its format, ANDed with
        ``filter``: ``(&(|(uid=alice)(mail=alice@example.org))(objectClass=person))``."""
        value = escape_value(username)
        alternatives = "".join(f"({attr}={fmt.replace('%u', value)})" for attr, fmt in self.uids)
        match = alternatives if len(self.uids) == 1 else f"(|{alternatives})"
        return f"(&{match}{self.filter})" if self.filter else match

    def _attributes(self) -> list[str]:
        wanted: list[str] = []
        if self.local_filter is not None:
            wanted.append(str(self.local_filter["attribute"]))
        if self.dn_filter is not None:
            wanted.extend(str(a) for a in self.dn_filter["attributes"])
        return wanted

    def _find(self, conn: Any, jid: JID) -> str | None:
        """In a worker thread: the DN of the user's entry when exactly one matches and the
        entry passes ``local_filter`` and ``dn_filter``."""
        ok = conn.search(self.base, self.user_filter(jid.local or ""), search_scope="SUBTREE",
                         dereference_aliases=self.deref, attributes=self._attributes(),
                         size_limit=2)
        if not ok and (conn.result or {}).get("result") == 4:  # sizeLimitExceeded
            log.warning("auth_ldap_ambiguous user=%s", jid)
            return None
        check_result(conn, ok)
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if entries:
                log.warning("auth_ldap_ambiguous user=%s entries=%d", jid, len(entries))
            return None
        entry = entries[0]
        attributes = _lower_keys(entry.get("attributes") or {})
        if self.local_filter is not None and not self._local_ok(attributes):
            return None
        dn = str(entry["dn"])
        if self.dn_filter is not None and not self._dn_filter_ok(conn, jid, dn, attributes):
            return None
        return dn

    def _local_ok(self, attributes: Mapping[str, Any]) -> bool:
        assert self.local_filter is not None
        values = _values(attributes.get(str(self.local_filter["attribute"]).lower()))
        hit = any(v in values for v in self.local_filter["values"])
        return hit if self.local_filter["operation"] == "equal" else not hit

    def _dn_filter_ok(self, conn: Any, jid: JID, dn: str, attributes: Mapping[str, Any]) -> bool:
        assert self.dn_filter is not None
        text = str(self.dn_filter["filter"])
        # %s takes the values of `attributes` in order, the first value of each (MongooseIM
        # substitutes them the same way, one %s per attribute).
        for attr in self.dn_filter["attributes"]:
            values = _values(attributes.get(str(attr).lower()))
            text = text.replace("%s", escape_value(values[0] if values else ""), 1)
        text = (text.replace("%u", escape_value(jid.local or ""))
                .replace("%d", escape_value(jid.domain)).replace("%D", escape_value(dn)))
        ok = conn.search(self.base, text, search_scope="SUBTREE",
                         dereference_aliases=self.deref, attributes=[], size_limit=1)
        if not ok and (conn.result or {}).get("result") == 4:
            return True  # more than one entry matched: something did
        check_result(conn, ok)
        return any(e.get("type") == "searchResEntry" for e in conn.response or [])

    async def find_dn(self, jid: JID) -> str | None:
        return await self.search_pool.run(lambda conn: self._find(conn, jid))

    async def user_exists(self, jid: JID) -> bool:
        return await self.find_dn(jid) is not None

    async def check_password(self, jid: JID, password: str) -> bool:
        if not password:
            # An empty password is an "unauthenticated bind" (RFC 4513 §5.1.2) that many
            # directories accept as anonymous: it must never mean "right password".
            return False
        dn = await self.find_dn(jid)
        if dn is None:
            return False
        return await self.bind_pool.run(lambda conn: _bind_as(conn, dn, password))


def _bind_as(conn: Any, dn: str, password: str) -> bool:
    from ldap3.core.exceptions import LDAPException

    if conn.rebind(user=dn, password=password, read_server_info=False):
        return True
    code = (conn.result or {}).get("result")
    if code in _WRONG_USER:
        return False
    raise LDAPException(f"bind: {(conn.result or {}).get('description')}")


def _lower_keys(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in attributes.items()}


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
