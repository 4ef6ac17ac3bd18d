"""mod_hello: an operator's own module. `[modules.mod_hello]` enables it; the server then
answers an IQ get `<query xmlns='urn:example:hello'/>` sent to a served domain with the
configured greeting, and lists the namespace in the domain's disco#info."""

from __future__ import annotations

from suricate.config.spec import Option, Section, Str
from suricate.core.iq import IqRequest
from suricate.core.module import Module
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

NS = "urn:example:hello"


class ModHello(Module):
    # The TOML section name; it must equal the entry point's name in pyproject.toml.
    name = "mod_hello"
    # What `[modules.mod_hello]` may hold: check-config refuses anything else with its path.
    options = Section(
        {"greeting": Option(Str(), "hello", "What the server answers.")},
        doc="Answers urn:example:hello queries with a greeting (an example module).",
    )
    # ("local": addressed to a served domain, namespace, method answering it)
    iq_handlers = (("local", NS, "hello"),)
    features = (NS,)  # added to the domain's disco#info

    def hello(self, iq: IqRequest) -> Element:
        # The query is only read: a set is refused (RFC 6120 §8.3.3.5 not-allowed), and
        # an error raised here becomes the IQ's error reply.
        if iq.type != "get":
            raise StanzaError("not-allowed")
        if iq.payload.name != "query":
            raise StanzaError("bad-request")
        query = Element("query", NS)
        query.add("greeting", text=self.opts["greeting"])
        return query  # the payload of the result IQ
