"""The peer's-fault error family: stream errors and stanza errors (RFC 6120 §4.9, §8.3)."""

from __future__ import annotations

from suricate.xml import ns
from suricate.xml.element import Element

# RFC 6120 §8.3.3: the usual error type of each defined condition.
STANZA_ERROR_TYPES: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}

STREAM_CONDITIONS = frozenset({
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed", "policy-violation",
    "remote-connection-failed", "reset", "resource-constraint", "restricted-xml", "see-other-host",
    "system-shutdown", "undefined-condition", "unsupported-encoding", "unsupported-feature",
    "unsupported-stanza-type", "unsupported-version",
})


class StreamError(Exception):
    """Ends the stream: ``<stream:error><condition/></stream:error></stream:stream>``;
    ``app_condition``: an application-specific condition after it (RFC 6120 §4.9.4), e.g.
    XEP-0198's <handled-count-too-high/>."""

    def __init__(self, condition: str, text: str | None = None,
                 app_condition: Element | None = None) -> None:
        assert condition in STREAM_CONDITIONS, condition
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.app_condition = app_condition

    def to_element(self) -> Element:
        err = stream_error_element(self.condition, self.text)
        if self.app_condition is not None:
            err.append(self.app_condition)
        return err


class StanzaError(Exception):
    """Answers one stanza with an error of ``condition`` (RFC 6120 §8.3)."""

    def __init__(self, condition: str, text: str | None = None, type_: str | None = None,
                 app_condition: Element | None = None) -> None:
        assert condition in STANZA_ERROR_TYPES, condition
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.type = type_ or STANZA_ERROR_TYPES[condition]
        self.app_condition = app_condition

    def to_element(self, by: str | None = None) -> Element:
        err = Element("error", ns.CLIENT, {"type": self.type})
        if by:
            err.attrs["by"] = by
        err.add(self.condition, ns.STANZAS_ERRORS)
        if self.text:
            err.add("text", ns.STANZAS_ERRORS, {"xml:lang": "en"}, self.text)
        if self.app_condition is not None:
            err.append(self.app_condition)
        return err


def stream_error_element(condition: str, text: str | None = None) -> Element:
    err = Element("error", ns.STREAM)
    err.add(condition, ns.STREAMS_ERRORS)
    if text:
        err.add("text", ns.STREAMS_ERRORS, {"xml:lang": "en"}, text)
    return err


def error_reply(stanza: Element, error: StanzaError) -> Element:
    """RFC 6120 §8.3.1: swap to/from, type='error', keep the original payload."""
    reply = Element(stanza.name, stanza.xmlns, dict(stanza.attrs))
    to, frm = stanza.attrs.get("to"), stanza.attrs.get("from")
    reply.set("to", frm)
    reply.set("from", to)
    reply.attrs["type"] = "error"
    # The original payload helps the sender correlate; IQ children are kept, error children
    # of the original are not (an error about an error would loop).
    reply.children = [c for c in stanza.children
                      if not (isinstance(c, Element) and c.name == "error")]
    reply.children.append(error.to_element())
    return reply
