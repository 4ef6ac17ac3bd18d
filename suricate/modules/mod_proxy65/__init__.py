"""mod_proxy65: a SOCKS5 bytestreams proxy (XEP-0065 §6) at `proxy.@HOST@`.

Two people behind NAT cannot connect to each other for a file transfer (XEP-0096 SI with
SOCKS5, or Jingle's S5B transport, XEP-0260); both can connect to the server. The service is
listed in each served domain's disco#items with the identity proxy/bytestreams; a client
asks it for its network address (the `<streamhost/>`), offers it to the other party, both
connect to it over SOCKS5 with the same hash, and the requester's `<activate/>` starts the
relay (`socks5.py`). Option names are ejabberd's (MongooseIM 6.4 has no such module).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suricate.config.spec import OMIT, Int, IntOrInfinity, IPAddress, Option, Section, Str
from suricate.core.iq import error_for
from suricate.core.module import Module
from suricate.instrument.events import SPIRAL, declare
from suricate.jid import JID, InvalidJID
from suricate.net.shaper import bucket_factory
from suricate.protocol.errors import StanzaError, error_reply
from suricate.protocol.stanza import result_reply
from suricate.xml import ns
from suricate.xml.element import Element

from .socks5 import Limits, Relay, Streamhost

if TYPE_CHECKING:
    from suricate.config.loader import References
    from suricate.core.server import Server

log = logging.getLogger("suricate.mod_proxy65")

BYTESTREAMS = "http://jabber.org/protocol/bytestreams"

MOD_PROXY65_STREAM = declare(
    "mod_proxy65_stream", ("host_type",), {"count": SPIRAL, "bytes": SPIRAL},
    "Bytestreams the proxy relayed: activated (count), and bytes relayed both ways once "
    "each ended")


class ModProxy65(Module):
    name = "mod_proxy65"
    own_port_option = "port"  # `serve --workers`: worker i listens on port + i
    xeps = ("0065",)
    options = Section(
        {
            "host": Option(Str(lower=True), "proxy.@HOST@",
                           "Domain of the proxy service; @HOST@ is each served domain."),
            "name": Option(Str(), "SOCKS5 Bytestreams",
                           "Name of the service in its disco#info identity."),
            "ip": Option(IPAddress(), "0.0.0.0",
                         "Address the SOCKS5 listener binds to (an IPv6 one, such as "
                         '"::", listens on IPv6 only).'),
            "hostname": Option(Str(), OMIT,
                               "Host announced in the `<streamhost/>` (an address or a DNS "
                               "name clients can reach). Default: `ip`, or the served domain "
                               "when `ip` is a wildcard. Behind NAT, set it to the public "
                               "address."),
            "port": Option(Int(min=0, max=65535), 7777,
                           "Port of the SOCKS5 listener (0: one the system chooses, announced "
                           "as bound). Under `serve --workers N`, worker i listens on port + i."),
            "max_connections": Option(IntOrInfinity(min=1), None,
                                      "Bytestreams one requester (bare JID) may have relayed "
                                      "at once; more are refused with resource-constraint."),
            "access": Option(Str(), "all",
                             "Access rule of who may use the proxy (ask its address and "
                             "activate a bytestream)."),
            "shaper": Option(Str(), "none",
                             "Shaper (`[shaper.NAME]`) of each relayed connection: each side "
                             "is read at most `max_rate` bytes per second."),
            "recbuf": Option(Int(min=1, unit="bytes"), OMIT,
                             "Socket receive buffer (SO_RCVBUF) of each connection; default: "
                             "the system's."),
            "sndbuf": Option(Int(min=1, unit="bytes"), OMIT,
                             "Socket send buffer (SO_SNDBUF) of each connection; default: the "
                             "system's."),
            "activation_timeout": Option(Int(min=1, unit="seconds"), 60,
                                         "A connection not relaying this long after it "
                                         "arrived (handshake unfinished, no partner, not "
                                         "activated) is closed."),
            "idle_timeout": Option(IntOrInfinity(min=1, unit="seconds"), 300,
                                   "A relayed bytestream with no byte either way this long "
                                   "is closed."),
            "max_pending": Option(Int(min=1), 1000,
                                  "Connections not relaying yet, all together; a new one over "
                                  "the limit is closed at once."),
        },
        doc="XEP-0065 SOCKS5 Bytestreams proxy (ejabberd's option names).",
    )

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.access_defined(f"{path}.access", opts.get("access"))
        refs.shaper_defined(f"{path}.shaper", opts.get("shaper"))

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        self.services: dict[str, str] = {}
        self.port = 0
        self.active: dict[JID, int] = {}  # requester's bare JID -> relays
        self.streamhost = Streamhost(Limits(
            activation_timeout=opts["activation_timeout"],
            idle_timeout=opts["idle_timeout"],
            max_pending=opts["max_pending"],
            recbuf=opts.get("recbuf"),
            sndbuf=opts.get("sndbuf"),
            new_bucket=bucket_factory(opts["shaper"], server.cfg.get("shaper") or {}),
        ))

    async def start(self) -> None:
        self.port = await self.streamhost.start(self.opts["ip"], self.opts["port"])
        self.services = self.serve_subdomains(self.opts["host"], self.handle)

    def listening(self) -> list[tuple[str, int]]:
        return [("proxy65", self.port)] if self.port else []

    async def stop(self) -> None:
        await self.streamhost.stop()

    def announced_host(self, domain: str) -> str:
        """What the `<streamhost/>` of the service of ``domain`` says to connect to."""
        if "hostname" in self.opts:
            return str(self.opts["hostname"])
        ip = self.opts["ip"]
        return domain if ipaddress.ip_address(ip).is_unspecified else str(ip)

    # -- the service domain --------------------------------------------------------------------
    def handle(self, frm: JID, to: JID, stanza: Element) -> None:
        if stanza.name != "iq" or stanza.get("type") not in ("get", "set"):
            if stanza.name == "message" and stanza.get("type") != "error":
                self.server.router.route(to, frm, error_for(stanza, "service-unavailable"))
            return  # RFC 6120 §8.2.3: results and errors are never answered
        payload = stanza.first_element()
        try:
            if payload is None or to.local is not None or to.resource is not None:
                raise StanzaError("service-unavailable")
            reply = self._iq(frm, to, stanza.get("type") or "", payload)
        except StanzaError as err:
            self.server.router.route(to, frm, error_reply(stanza, err))
            return
        self.server.router.route(to, frm, result_reply(stanza, frm, to, reply))

    def _iq(self, frm: JID, to: JID, type_: str, payload: Element) -> Element | None:
        if payload.name != "query":
            raise StanzaError("service-unavailable")
        if type_ == "get" and payload.xmlns == ns.DISCO_INFO:
            if payload.get("node"):
                raise StanzaError("item-not-found")
            return self._disco_info()
        if type_ == "get" and payload.xmlns == ns.DISCO_ITEMS:
            return Element("query", ns.DISCO_ITEMS)
        if payload.xmlns == BYTESTREAMS:
            domain = self.services.get(to.domain, to.domain)
            if not self.server.access_allows(self.opts["access"], frm, domain):
                # XEP-0065 §6.3.2: the proxy is unwilling to act as a StreamHost for this user.
                raise StanzaError("forbidden", "you may not use this proxy", "auth")
            if type_ == "get":
                return self._streamhost(to, domain)
            self._activate(frm, domain, payload)
            return None
        raise StanzaError("service-unavailable")

    def _disco_info(self) -> Element:
        query = Element("query", ns.DISCO_INFO)
        query.add("identity", attrs={"category": "proxy", "type": "bytestreams",
                                     "name": self.opts["name"]})
        for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS, BYTESTREAMS):
            query.add("feature", attrs={"var": feature})
        return query

    def _streamhost(self, to: JID, domain: str) -> Element:
        # XEP-0065 §4: the proxy's network address.
        query = Element("query", BYTESTREAMS)
        query.add("streamhost", attrs={"jid": str(to), "host": self.announced_host(domain),
                                       "port": str(self.port)})
        return query

    def _activate(self, frm: JID, domain: str, query: Element) -> None:
        sid = query.get("sid")
        activate = query.find("activate", BYTESTREAMS)
        if not sid or activate is None or not activate.text.strip():
            raise StanzaError("bad-request", "activation needs a sid and the target's JID")
        try:
            target = JID.parse(activate.text.strip())
        except InvalidJID:
            raise StanzaError("jid-malformed", "the target is not a JID") from None
        # XEP-0065 §6.3.2: the hash both parties connected with. Computed with the IQ's
        # sender, so only the requester named in it can activate.
        key = hashlib.sha1(f"{sid}{frm}{target}".encode()).hexdigest()
        connected = self.streamhost.connected(key)
        if connected == 0:
            raise StanzaError("item-not-found", "no connection with this bytestream's hash")
        if connected == 1:
            raise StanzaError("not-allowed", "only one party is connected")
        limit = self.opts["max_connections"]
        bare = frm.bare
        if limit is not None and self.active.get(bare, 0) >= limit:
            raise StanzaError("resource-constraint",
                              f"at most {limit} bytestreams at once through this proxy")
        self.active[bare] = self.active.get(bare, 0) + 1
        labels = {"host_type": self.server.domains.host_type(domain)}

        def ended(relay: Relay) -> None:
            left = self.active.get(bare, 1) - 1
            if left > 0:
                self.active[bare] = left
            else:
                self.active.pop(bare, None)
            self.server.instrument.emit(MOD_PROXY65_STREAM, labels, {"bytes": relay.relayed})

        self.streamhost.activate(key, ended)
        self.server.instrument.emit(MOD_PROXY65_STREAM, labels, {"count": 1})
        log.info("proxy65_activated requester=%s target=%s", frm, target)
