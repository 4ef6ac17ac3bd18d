"""mod_register: XEP-0077 In-Band Registration.

Before authentication (``c2s_preauth_iq``) a client asks for the form and creates an account
(§3.1, §3.1.1); after authentication it reads its registration, changes its password (§3.3)
or cancels the account (§3.2), addressing the IQ to itself or to its server. The stream feature
is advertised (§8) only where registration may happen: the Security Considerations section says
in-band registration is not to be used over an unprotected channel, so on a listener offering
TLS nothing is registered, nor any password changed, before the stream is encrypted.

Limits, as MongooseIM: the ``access`` rule (who may take a username), ``ip_access`` (which
client addresses may register), ``[general] registration_timeout`` (seconds between two
registrations from one address, or from one IPv6 /64: ``timeout_group``),
``password_strength`` (minimum entropy in bits). With
several nodes (``sm_backend = "redis"``) ``registration_timeout`` holds for the whole
cluster: the address's slot is a Redis key with that time to live (``reg:<address>``),
so a client behind a load balancer cannot register once per node.

A password is never logged and never echoed back: error replies carry no copy of the request
(§3.3: "SHOULD NOT return the original XML sent in IQ error stanzas related to password
changes"; we apply that to registration too).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from suricate.auth.service import AuthUnavailable, TooManyUsers
from suricate.config.loader import References
from suricate.config.modules_spec import iqdisc
from suricate.config.spec import DEFAULTS, Int, IPNetwork, ListOf, OneOf, Option, Section, Str
from suricate.core import hooks as H
from suricate.core.acl import allowed
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.jid import JID, InvalidJID
from suricate.protocol.errors import StanzaError, StreamError, error_reply
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.core.c2s import C2S

log = logging.getLogger("suricate.mod_register")

INSTRUCTIONS = "Choose a username and password to register with this server."

#: Seconds a client that may register has, after it got the form, to send it back filled in:
#: a person types into it (Gajim's, Dino's and Conversations' sign-up pages keep the stream
#: open meanwhile), which the listener's state_timeout (MongooseIM's 5 s) is not made for.
#: Prosody's limit for a stream that has not authenticated (c2s_timeout) is the same.
FORM_FILL_SECONDS = 300

# Gives back an address's registration slot only if it is still the one this request took
# (KEYS: reg:<address>; ARGV: the request's token).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@runtime_checkable
class _RedisCluster(Protocol):
    """What this module needs of the cluster layer (``suricate.cluster.redis_sm.RedisNode``,
    which a module may not import): its Redis client and key prefix."""

    redis: Any
    store: Any  # RedisSessions: prefix
REGISTERED_INSTRUCTIONS = ("You are registered. Send a new password to change it, or "
                           "<remove/> to cancel the account.")


def password_entropy(password: str) -> float:
    """Bits of entropy of ``password`` as a brute-force attacker sees it: its length times
    log2 of the alphabet its character classes span."""
    alphabet = 0
    if any("a" <= c <= "z" for c in password):
        alphabet += 26
    if any("A" <= c <= "Z" for c in password):
        alphabet += 26
    if any("0" <= c <= "9" for c in password):
        alphabet += 10
    if any(c.isascii() and not c.isalnum() for c in password):
        alphabet += 33  # space, punctuation and control characters of ASCII
    if any(not c.isascii() for c in password):
        alphabet += 128  # a conservative guess for the rest of Unicode
    if alphabet == 0:
        return 0.0
    return len(password) * math.log2(alphabet)


class ModRegister(Module):
    name = "mod_register"
    options = Section(
        {
            "iqdisc": iqdisc("one_queue"),
            "access": Option(
                Str(),
                "all",
                'Access rule deciding whether a username may be registered ("all" allows any).',
            ),
            "registration_watchers": Option(
                ListOf(Str()), [], "JIDs notified by message of every registration."
            ),
            "password_strength": Option(
                Int(min=0), 0, "Minimum password entropy in bits; 0 disables the check."
            ),
            "ip_access": Option(
                ListOf(
                    Section(
                        {
                            "address": Option(IPNetwork(), doc="Address or network."),
                            "policy": Option(OneOf(["allow", "deny"]), doc="Decision."),
                        }
                    )
                ),
                [],
                "Ordered allow/deny list of client addresses; the first match decides.",
            ),
            "welcome_message": Option(
                Section(
                    {
                        "subject": Option(Str(nonempty=False), "", "Subject."),
                        "body": Option(Str(nonempty=False), "", "Body."),
                    }
                ),
                DEFAULTS,
                "Message sent to new users; nothing is sent when both fields are empty.",
            ),
        },
        doc="XEP-0077 In-Band Registration.",
    )
    xeps = ("0077",)
    hooks = (
        (H.C2S_PREAUTH_IQ, "preauth_iq", 50),
        (H.C2S_PREAUTH_FEATURES, "preauth_features", 50),
    )
    iq_handlers = (
        ("sm", ns.REGISTER, "account_iq"),
        ("local", ns.REGISTER, "server_iq"),
    )
    features = (ns.REGISTER,)  # XEP-0077 "Determining Support"

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.access_defined(f"{path}.access", opts.get("access"))
        # Each watcher is told by message: one that is no JID would never be (a log line at
        # every registration instead), so it stops start-up with its path.
        for i, raw in enumerate(opts.get("registration_watchers") or []):
            try:
                JID.parse(raw)
            except (InvalidJID, ValueError):
                refs.report.error(f"{path}.registration_watchers[{i}]", f"{raw!r} is not a JID")

    def __init__(self, server: Any, opts: Any) -> None:
        super().__init__(server, opts)
        self.access_rule: str = opts.get("access", "all")
        self.min_entropy: int = int(opts.get("password_strength", 0))
        self.ip_access: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
            (ipaddress.ip_network(rule["address"], strict=False), rule["policy"])
            for rule in opts.get("ip_access", [])]
        welcome = opts.get("welcome_message") or {}
        self.welcome_subject: str = welcome.get("subject", "")
        self.welcome_body: str = welcome.get("body", "")
        self.watchers: list[str] = list(opts.get("registration_watchers", []))
        # None = "infinity": no limit between registrations from one address.
        self.registration_timeout: int | None = \
            server.cfg["general"].get("registration_timeout", 600)
        # Client address -> time.monotonic() of its last registration (or one in progress).
        self._last_registration: dict[str, float] = {}
        # sm_backend = "redis": the slots are Redis keys, shared by every node (start).
        self._redis: Any = None
        self._prefix = ""

    async def start(self) -> None:
        cluster = self.server.router.elsewhere
        if isinstance(cluster, _RedisCluster):
            self._redis, self._prefix = cluster.redis, cluster.store.prefix

    # -- before authentication ----------------------------------------------------------------
    def accounts_storable(self, c2s: C2S) -> bool:
        """Registration creates accounts with passwords: pointless without a method that
        keeps them (an anonymous-only server, or domain: its [[host_config]] auth)."""
        domain = c2s.domain or self.server.default_domain
        return self.server.auth.for_domain(domain).accounts_storable

    def preauth_features(self, features: list[Element], c2s: C2S) -> list[Element]:
        if self.accounts_storable(c2s) and _channel_secure(c2s):
            features.append(Element("register", ns.REGISTER_FEATURE))
        return features

    async def preauth_iq(self, handled: bool, c2s: C2S, iq: Element) -> Any:
        if handled:
            return handled
        query = iq.first_element()
        if query is None or query.name != "query" or query.xmlns != ns.REGISTER:
            return handled
        stype = iq.attrs.get("type")
        if stype not in ("get", "set"):
            return True  # RFC 6120 §8.2.3: results and errors are never answered
        try:
            if len(iq.find_all()) != 1:
                raise StanzaError("bad-request")  # RFC 6120 §8.2.3: one payload
            if not self.accounts_storable(c2s):
                # §3.1: a host without in-band registration answers service-unavailable.
                raise StanzaError("service-unavailable")
            if not _channel_secure(c2s):
                raise StanzaError("not-authorized", "register over an encrypted stream")
            if stype == "get":
                # §3.1: an entity that has not authenticated is taken as unregistered.
                c2s.send(_result(iq, _form()))
                if self._ip_allowed(_peer_ip(c2s)):
                    c2s.extend_state_deadline(FORM_FILL_SECONDS)
                return True
            await self._register(c2s, query)
        except StanzaError as err:
            c2s.send(_error(iq, err))
            return True
        c2s.send(_result(iq, None))
        return True

    async def _register(self, c2s: C2S, query: Element) -> None:
        if query.find("remove", ns.REGISTER) is not None:
            # §3.2 error table: a cancellation from an entity that has not authenticated.
            raise StanzaError("unexpected-request", "authenticate before cancelling")
        username, password = _credentials(query)
        if not username or not password:
            # §3.1: missing information, an empty password included -> not-acceptable.
            raise StanzaError("not-acceptable", "a username and a password are required")
        domain = c2s.domain or self.server.default_domain
        try:
            jid = JID(username, domain, None)
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed", "this username is not allowed") from None
        ip = _peer_ip(c2s)
        if not self._ip_allowed(ip) or not self.server.access_allows(self.access_rule, jid):
            raise StanzaError("forbidden", "registration is not allowed")
        self._check_strength(password)
        ip = timeout_group(ip)  # one slot per IPv6 /64 (see timeout_group)
        slot = await self._reserve_slot(ip)
        try:
            created = await self.server.auth.register(jid, password)
        except TooManyUsers:
            await self._release_slot(ip, slot)
            raise StanzaError("not-allowed", "this domain has all the accounts it may have")\
                from None
        except AuthUnavailable:
            # The http service or extauth program could not answer (RFC 6120 §8.3.3.5).
            await self._release_slot(ip, slot)
            raise StanzaError("internal-server-error", "the account service is unavailable")\
                from None
        except BaseException:
            await self._release_slot(ip, slot)
            raise
        if not created:
            await self._release_slot(ip, slot)
            raise StanzaError("conflict", "this username is taken")  # §3.1
        log.info("register_user jid=%s ip=%s", jid, _peer_ip(c2s))
        self._welcome(jid)
        self._notify_watchers(jid, _peer_ip(c2s))

    def _ip_allowed(self, ip: str | None) -> bool:
        if ip is None or not self.ip_access:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return True
        for network, policy in self.ip_access:
            if address.version == network.version and address in network:
                return allowed(policy)
        return True

    def _check_strength(self, password: str) -> None:
        if self.min_entropy and password_entropy(password) < self.min_entropy:
            # XEP-0077 §3.1 names not-acceptable for a request the server will not take; the
            # text says what to do (MongooseIM 6.4 answers the same condition).
            raise StanzaError("not-acceptable",
                              f"the password is too weak: it needs {self.min_entropy} bits of "
                              "entropy; make it longer or mix lower and upper case, digits "
                              "and punctuation")

    async def _reserve_slot(self, ip: str | None) -> str | None:
        """``registration_timeout``: one registration per address per period. The slot is
        taken before the account is created (two requests in flight cannot both pass) and
        given back if creation fails. With several nodes, in Redis (``SET NX EX``: one
        request of the whole cluster takes it, and it expires by itself): the token that
        took it, for ``_release_slot``; Redis out of reach, this node's table (logged)."""
        timeout = self.registration_timeout
        if timeout is None or ip is None:
            return None
        if self._redis is not None and timeout > 0:  # (Redis refuses a TTL of 0)
            token = secrets.token_hex(8)
            try:
                # In a task: the stream may run this step outside any, and the Redis
                # pool's wait for a free connection (asyncio.timeout) needs one.
                taken = await asyncio.ensure_future(self._redis.set(
                    f"{self._prefix}reg:{ip}", token, nx=True, ex=timeout))
            except Exception:
                log.warning("register_slot_redis_failed ip=%s", ip, exc_info=True)
            else:
                if not taken:
                    raise StanzaError("resource-constraint",
                                      "accounts cannot be registered that quickly",
                                      type_="wait")
                return token
        self._reserve_here(ip, timeout)
        return None

    def _reserve_here(self, ip: str, timeout: int) -> None:
        now = time.monotonic()
        # Forget addresses whose period is over, so the table stays small.
        for addr in [a for a, t in self._last_registration.items() if now - t >= timeout]:
            del self._last_registration[addr]
        if ip in self._last_registration:
            raise StanzaError("resource-constraint",
                              "accounts cannot be registered that quickly", type_="wait")
        self._last_registration[ip] = now

    async def _release_slot(self, ip: str | None, token: str | None) -> None:
        if ip is None:
            return
        if token is None:
            self._last_registration.pop(ip, None)
            return
        try:
            await asyncio.ensure_future(
                self._redis.eval(_RELEASE, 1, f"{self._prefix}reg:{ip}", token))
        except Exception:
            # The slot then lasts its time to live: one address waits, nothing is wrong.
            log.warning("register_slot_release_failed ip=%s", ip, exc_info=True)

    def _welcome(self, jid: JID) -> None:
        if not self.welcome_subject and not self.welcome_body:
            return
        server_jid = JID(None, jid.domain, None)
        msg = Element("message", ns.CLIENT, {"type": "normal", "from": str(server_jid),
                                             "to": str(jid)})
        if self.welcome_subject:
            msg.add("subject", text=self.welcome_subject)
        if self.welcome_body:
            msg.add("body", text=self.welcome_body)
        self.server.router.route(server_jid, jid, msg)

    def _notify_watchers(self, jid: JID, ip: str | None) -> None:
        if not self.watchers:
            return
        server_jid = JID(None, jid.domain, None)
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        body = f"[{when}] The account {jid} was registered from IP address {ip or 'unknown'}."
        for raw in self.watchers:
            try:
                watcher = JID.parse(raw)
            except InvalidJID:
                log.warning("registration_watcher_invalid jid=%r", raw)
                continue
            msg = Element("message", ns.CLIENT, {"type": "chat", "from": str(server_jid),
                                                 "to": str(watcher)})
            msg.add("body", text=body)
            self.server.router.route(server_jid, watcher, msg)

    # -- after authentication -----------------------------------------------------------------
    async def account_iq(self, iq: IqRequest) -> Element | None:
        """Addressed to an account's bare JID (or with no 'to'): only its owner may act."""
        if iq.frm.bare != iq.to.bare:
            raise StanzaError("service-unavailable")
        return await self._own_account(iq, iq.to.bare)

    async def server_iq(self, iq: IqRequest) -> Element | None:
        """Addressed to the server (as in the §3.3 example): about the sender's own account,
        which must live on that server."""
        if iq.frm.local is None or iq.frm.domain != iq.to.domain:
            raise StanzaError("not-allowed", "only this server's users are registered here")
        return await self._own_account(iq, iq.frm.bare)

    async def _own_account(self, iq: IqRequest, user: JID) -> Element | None:
        try:
            if iq.type == "get":
                return _registered(user)
            session = cast("C2S | None", self.server.sessions.lookup(iq.frm))
            if session is not None and session.anonymous:
                raise StanzaError("not-allowed", "an anonymous account is not registered")
            if not self.server.auth.for_domain(user.domain).accounts_storable:
                # §3.3 and §3.2 tables: not-allowed when the service does not let accounts be
                # changed or cancelled in band; here they live elsewhere (ldap, jwt, dummy:
                # read only, as in MongooseIM 6.4). Not registration-required: the owner is
                # logged in, so the account exists.
                raise StanzaError("not-allowed", "this account is managed elsewhere")
            if iq.payload.find("remove", ns.REGISTER) is not None:
                await self._cancel(iq.payload, user, session)
                return None
            await self._change_password(iq.payload, user, session, iq.frm)
            return None
        except StanzaError:
            # §3.3: no copy of the request (it may hold a password) in the error.
            iq.stanza.children = []
            raise

    async def _cancel(self, query: Element, user: JID, session: C2S | None) -> None:
        """§3.2: remove the account, answer, then end every session of it with a
        not-authorized stream error: the others (on every node of a cluster) with the
        removal (``Server.account_removed``), the one asking once its answer is written."""
        if len(query.find_all()) != 1:
            raise StanzaError("bad-request", "<remove/> must be alone")
        by = session.jid if session is not None else None
        if not await self.server.auth.remove(user, by=by):
            raise StanzaError("registration-required")
        log.info("unregister_user jid=%s", user)
        if session is not None:
            # After the result: the IQ dispatcher routes it as soon as this coroutine
            # returns, within the same step of the event loop; call_soon comes after that.
            asyncio.get_running_loop().call_soon(
                session.stream_error, StreamError("not-authorized", "account removed"))

    async def _change_password(self, query: Element, user: JID, session: C2S | None,
                               by: JID) -> None:
        """§3.3. The account's other sessions end (``Server.password_changed``); ``by``, the
        one asking, stays."""
        if session is not None and not _channel_secure(session):
            raise StanzaError("not-authorized", "change the password over an encrypted stream")
        username, password = _credentials(query)
        if username is None:
            raise StanzaError("bad-request", "the username is required")
        try:
            named = JID(username, user.domain, None)
        except (InvalidJID, ValueError):
            raise StanzaError("jid-malformed") from None
        if named.local != user.local:
            raise StanzaError("not-allowed", "this is not your account")
        if not password:
            # §3.3: an empty password never replaces the existing one.
            raise StanzaError("not-acceptable", "the password is empty")
        self._check_strength(password)
        if not await self.server.auth.set_password(user, password, by=by):
            raise StanzaError("registration-required")


# -- helpers ------------------------------------------------------------------------------------
def _channel_secure(c2s: C2S) -> bool:
    """A listener with TLS configured must have it running first; a listener without any
    TLS is the operator's explicit choice."""
    return c2s.tls_config is None or c2s.is_tls


def _peer_ip(c2s: C2S) -> str | None:
    """The client's address, an IPv4 client of a dual-stack socket (``::ffff:a.b.c.d``, as a
    PROXY protocol header from a dual-stack load balancer gives it) as the IPv4 address it
    is: ``ip_access`` rules name IPv4 networks, which never contain the mapped form, so a
    "deny 10.0.0.0/8" would otherwise let 10.1.2.3 through."""
    peer = getattr(c2s.conn, "peer", None)
    if not isinstance(peer, tuple | list) or not peer:
        return None
    raw = str(peer[0])
    try:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return raw


def timeout_group(ip: str | None) -> str | None:
    """The key of ``registration_timeout`` for a client address: an IPv4 address itself, an
    IPv6 address its /64. A /64 is one subnet (RFC 4291 §2.5.4: the interface identifier is
    the low 64 bits), and an end site gets at least one (RFC 6177): a host picks any address
    in it at will (RFC 8981 temporary addresses), so counting single IPv6 addresses would
    give a spammer 2^64 registrations per period. Users behind one /64 share a slot, as
    users behind one IPv4 NAT do."""
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return ip


def _credentials(query: Element) -> tuple[str | None, str | None]:
    """Username and password from the iq:register fields, or from a submitted data form
    (XEP-0077 §4: the form takes precedence when present). XEP-0004 §3.1 wants
    ``type='submit'``, but QXmpp 1.4 (Kaidan 0.8) sends back the form it was given, values
    filled in, still ``type='form'``; Prosody 0.12 reads the fields whatever the type, so
    does this, except a ``cancel`` (§3.1: the submission was cancelled)."""
    form = query.find("x", ns.DATA_FORMS)
    if form is not None and form.attrs.get("type") != "cancel":
        values = {field.attrs.get("var"): field.find_text("value", ns.DATA_FORMS)
                  for field in form.find_all("field", ns.DATA_FORMS)}
        return values.get("username"), values.get("password")
    return query.find_text("username", ns.REGISTER), query.find_text("password", ns.REGISTER)


def _form() -> Element:
    """§3.1: the fields to fill, twice: the legacy ``<username/>`` and ``<password/>``
    (Conversations, slixmpp) and, §4, the same as a XEP-0004 form scoped by the FORM_TYPE
    ``jabber:iq:register`` (§6.1), which is all Dino reads and what Gajim prefers. A client
    submits either (``_credentials``)."""
    query = Element("query", ns.REGISTER)
    query.add("instructions", text=INSTRUCTIONS)
    query.add("username")
    query.add("password")
    form = query.add("x", ns.DATA_FORMS, {"type": "form"})
    form.add("title", text="Registration")
    form.add("instructions", text=INSTRUCTIONS)
    form_type = form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    form_type.add("value", text=ns.REGISTER)
    for var, ftype, label in (("username", "text-single", "Username"),
                              ("password", "text-private", "Password")):
        form.add("field", attrs={"var": var, "type": ftype, "label": label}).add("required")
    return query


def _registered(user: JID) -> Element:
    """§3.1: an authenticated entity is told it is registered, with what is on file (not the
    password)."""
    query = Element("query", ns.REGISTER)
    query.add("registered")
    query.add("instructions", text=REGISTERED_INSTRUCTIONS)
    query.add("username", text=user.local or "")
    return query


def _result(iq: Element, payload: Element | None) -> Element:
    reply = Element("iq", ns.CLIENT, {"type": "result"})
    if "id" in iq.attrs:
        reply.attrs["id"] = iq.attrs["id"]
    if payload is not None:
        reply.append(payload)
    return reply


def _error(iq: Element, err: StanzaError) -> Element:
    bare = Element(iq.name, iq.xmlns, dict(iq.attrs))  # without the query: no password echo
    reply = error_reply(bare, err)
    reply.attrs.pop("from", None)
    reply.attrs.pop("to", None)
    return reply
