"""mod_extdisco: XEP-0215 External Service Discovery, the STUN/TURN (and other) services the
operator lists, for clients that set up audio and video calls (Jingle ICE-UDP needs them).

The services are static configuration (MongooseIM 6.4's ``[[modules.mod_extdisco.service]]``):
a configured ``username``/``password`` is given as it is, both in the list (§3.1, §3.2) and
in answer to ``<credentials/>`` (§3.3), as MongooseIM does. Such long-lived credentials are
readable by every account of the server, so XEP-0215 §2's note suggests short-term ones
derived from a secret shared with the TURN server: a service with a ``secret`` (the key
MongooseIM added after 6.4) gets, for each request, the TURN REST API's time-limited pair
(draft-uberti-behave-turn-rest-00 §2.2), which coturn checks with ``use-auth-secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import REQUIRED, Context, Int, ListOf, OneOf, Option, Section, Str, join
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.jid import JID
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

NS_EXTDISCO = "urn:xmpp:extdisco:2"

#: The <service/> attributes a configured service may give, in the order they are written.
_ATTRIBUTES = ("type", "host", "port", "transport", "username", "password")

#: TURN REST API (draft-uberti-behave-turn-rest-00 §2.2): its recommended lifetime, one day.
DEFAULT_LIFETIME = 86400


def _service_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    # As in MongooseIM: the credentials are either fixed or derived from the secret.
    if out.get("secret") is not None:
        for key in ("username", "password"):
            if out.get(key) is not None:
                ctx.error(join(path, key), "cannot be set together with secret")
    elif "credentials_lifetime" in raw:
        ctx.error(join(path, "credentials_lifetime"), "only applies to a service with a secret")
    _warn_unusable(out, path, ctx)


#: The ICE server types calling clients take from the list (RFC 7064, RFC 7065 URIs).
_ICE_TYPES = frozenset({"stun", "stuns", "turn", "turns"})


def _warn_unusable(out: Mapping[str, Any], path: str, ctx: Context) -> None:
    """XEP-0215 makes port and transport optional, but calling clients build ICE server URIs
    from them (Conversations skips a STUN/TURN service without both, a TURN service without
    credentials, which WebRTC refuses, and stuns/turns over udp): the operator hears it here
    rather than from users whose calls fail behind NATs."""
    kind = out.get("type")
    if kind not in _ICE_TYPES:
        return
    missing = [key for key in ("port", "transport") if out.get(key) is None]
    if missing:
        ctx.warn(join(path, missing[0]), f"a {kind} service without "
                 + " and ".join(missing) + " is skipped by calling clients (Conversations)")
    if kind in ("turn", "turns") and out.get("secret") is None \
            and (out.get("username") is None or out.get("password") is None):
        ctx.warn(path, f"a {kind} service without username and password (or secret) is "
                       "skipped by calling clients (WebRTC needs credentials for TURN)")
    if kind in ("stuns", "turns") and out.get("transport") == "udp":
        ctx.warn(join(path, "transport"), f"{kind} over udp is skipped by calling clients "
                                          "(Conversations: TLS runs over tcp)")

SERVICE = Section(
    {
        "type": Option(Str(), REQUIRED,
                       'Service type as registered with the XMPP Registrar ("stun", "turn", '
                       '"turns", "ftp"...).', example='"stun"'),
        "host": Option(Str(), REQUIRED, "Host name or IP address of the service.",
                       example='"192.168.0.2"'),
        "port": Option(Int(min=0, max=65535), None, "Port of the service (recommended).",
                       example="3478"),
        "transport": Option(OneOf(["udp", "tcp"]), None,
                            "Transport protocol used to reach the service."),
        "username": Option(Str(), None,
                           "Username for the service, given to every client as it is."),
        "password": Option(Str(), None,
                           "Password for the service, given to every client as it is."),
        "secret": Option(Str(), None,
                         "Secret shared with the TURN server (coturn's static-auth-secret): "
                         "each client gets a time-limited username and password derived from "
                         "it (TURN REST API). Not with username or password.",
                         example='"a long random secret"'),
        "credentials_lifetime": Option(Int(min=1, unit="seconds"), DEFAULT_LIFETIME,
                                       "Suricate: how long the credentials derived from "
                                       "secret are valid.", example="86400"),
    },
    post=_service_post,
)


def service_element(service: Mapping[str, Any], user: JID | None = None,
                    now: float | None = None) -> Element:
    """One configured service as XEP-0215 §2's <service/>: its attributes, and for a service
    with a secret the credentials of ``user`` valid from ``now``."""
    attrs = {key: str(service[key]) for key in _ATTRIBUTES if service.get(key) is not None}
    secret = service.get("secret")
    if secret is not None and user is not None:
        expiry = int(time.time() if now is None else now) + service["credentials_lifetime"]
        attrs["username"], attrs["password"] = turn_rest_credentials(secret, expiry, user)
        # XEP-0215 §2: when they expire, as an XEP-0082 DateTime in UTC.
        attrs["expires"] = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Element("service", NS_EXTDISCO, attrs)


def turn_rest_credentials(secret: str, expiry: int, user: JID) -> tuple[str, str]:
    """draft-uberti-behave-turn-rest-00 §2.2: the username is the expiry (seconds since the
    epoch), a colon and the user's name; the password base64(HMAC-SHA1(secret, username)).
    The TURN server recomputes the password from its copy of the secret and refuses the pair
    once the expiry has passed. The bare JID has no colon (RFC 7622 §3.3.1 forbids it in a
    localpart), so the TURN server's split at the first colon finds the expiry."""
    username = f"{expiry}:{user.bare}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class ModExtdisco(Module):
    name = "mod_extdisco"
    options = Section(
        {
            "iqdisc": iqdisc("no_queue"),
            "service": Option(ListOf(SERVICE), [],
                              "The external services advertised, one table each "
                              "([[modules.mod_extdisco.service]]).", example="[]"),
        },
        doc="XEP-0215 External Service Discovery: advertises STUN/TURN and other services "
            "external to XMPP.",
    )
    xeps = ("0215",)
    iq_handlers = (("local", NS_EXTDISCO, "external_services"),)
    # XEP-0215 §5: support is announced in the server's disco#info.
    features = (NS_EXTDISCO,)

    @property
    def services(self) -> list[Mapping[str, Any]]:
        services: list[Mapping[str, Any]] = self.opts.get("service", [])
        return services

    def external_services(self, iq: IqRequest) -> Element:
        if iq.type != "get":
            # Pushes (§3.2) go from the server to clients; a client has nothing to set.
            raise StanzaError("not-allowed")
        if iq.payload.name == "services":
            return self._services(iq.payload.attrs.get("type"), iq.frm)
        if iq.payload.name == "credentials":
            return self._credentials(iq.payload, iq.frm)
        raise StanzaError("bad-request")

    def _services(self, wanted: str | None, user: JID) -> Element:
        """§3.1 (every service) and §3.2 (services of one type, echoed in the answer)."""
        answer = Element("services", NS_EXTDISCO)
        if wanted is not None:
            answer.attrs["type"] = wanted
        matching: Iterable[Mapping[str, Any]] = (
            s for s in self.services if wanted is None or s["type"] == wanted)
        now = time.time()
        for service in matching:
            # Credentials from a secret are in the list too, as clients expect (Conversations
            # and Dino take them from <services/> and never send <credentials/>).
            answer.append(service_element(service, user, now))
        return answer

    def _credentials(self, request: Element, user: JID) -> Element:
        """§3.3: the <service/> asked for MUST carry host and type; port MAY pick among
        several on one host. An unknown service is item-not-found (the §3.3 error for
        credentials the server cannot obtain)."""
        asked = request.find("service", NS_EXTDISCO)
        if asked is None or not asked.attrs.get("host") or not asked.attrs.get("type"):
            raise StanzaError("bad-request", "credentials need a service with host and type")
        host, kind, port = asked.attrs["host"], asked.attrs["type"], asked.attrs.get("port")
        found = [s for s in self.services
                 if s["host"] == host and s["type"] == kind
                 and (port is None or str(s.get("port")) == port)]
        if not found:
            raise StanzaError("item-not-found", "no such service")
        answer = Element("credentials", NS_EXTDISCO)
        now = time.time()
        for service in found:  # §3.3: several when one host serves on several ports
            answer.append(service_element(service, user, now))
        return answer
