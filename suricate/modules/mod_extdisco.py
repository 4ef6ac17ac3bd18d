"""mod_extdisco: XEP-0215 External Service Discovery, the STUN/TURN (and other) services the
operator lists, for clients that set up audio and video calls (Jingle ICE-UDP needs them).

The services are static configuration (MongooseIM 6.4's ``[[modules.mod_extdisco.service]]``):
a configured ``username``/``password`` is given as it is, both in the list (§3.1, §3.2) and
in answer to ``<credentials/>`` (§3.3), as MongooseIM does. Such long-lived credentials are
readable by every account of the server; XEP-0215 §2's note suggests short-term ones derived
from a secret shared with the TURN server (TURN REST API), which MongooseIM added after 6.4
as ``secret`` and which Suricate does not have yet (the key is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from suricate.config.modules_spec import iqdisc
from suricate.config.spec import REQUIRED, Int, ListOf, OneOf, Option, Section, Str
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

NS_EXTDISCO = "urn:xmpp:extdisco:2"

#: The <service/> attributes a configured service may give, in the order they are written.
_ATTRIBUTES = ("type", "host", "port", "transport", "username", "password")

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
    },
    unavailable={
        "secret": "secret (TURN REST API credentials, from MongooseIM versions after 6.4) "
                  "is not available in this version of Suricate; give the service a fixed "
                  "username and password (docs/extdisco.md)",
    },
)


def service_element(service: Mapping[str, Any]) -> Element:
    """One configured service as XEP-0215 §2's <service/>: its attributes, nothing else."""
    attrs = {key: str(service[key]) for key in _ATTRIBUTES if service.get(key) is not None}
    return Element("service", NS_EXTDISCO, attrs)


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
            return self._services(iq.payload.attrs.get("type"))
        if iq.payload.name == "credentials":
            return self._credentials(iq.payload)
        raise StanzaError("bad-request")

    def _services(self, wanted: str | None) -> Element:
        """§3.1 (every service) and §3.2 (services of one type, echoed in the answer)."""
        answer = Element("services", NS_EXTDISCO)
        if wanted is not None:
            answer.attrs["type"] = wanted
        matching: Iterable[Mapping[str, Any]] = (
            s for s in self.services if wanted is None or s["type"] == wanted)
        for service in matching:
            answer.append(service_element(service))
        return answer

    def _credentials(self, request: Element) -> Element:
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
        for service in found:  # §3.3: several when one host serves on several ports
            answer.append(service_element(service))
        return answer
