"""What every XMPP stream says the same way, whatever its kind (c2s, s2s, component): the
response stream header (RFC 6120 §4.7), the closing tag (§4.4), the prefix of the stream
namespace, and the features both client and server streams offer (STARTTLS §5.4.1, SASL
§6.4.1 and XEP-0440 channel binding, SASL failures §6.5). Pure data, no I/O.
"""

from __future__ import annotations

from suricate.xml import ns
from suricate.xml.element import Element, escape_attr


def stream_header(stream_id: str, domain: str | None, lang: str = "en",
                  content_ns: str = ns.CLIENT) -> bytes:
    """Our response stream header (RFC 6120 §4.7): id, from, version 1.0."""
    frm = f" from='{escape_attr(domain)}'" if domain else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{content_ns}' "
        f"xmlns:stream='{ns.STREAM}' id='{stream_id}'{frm} version='1.0' "
        f"xml:lang='{escape_attr(lang)}'>"
    ).encode()


STREAM_CLOSE = b"</stream:stream>"
STREAM_PREFIXES = {ns.STREAM: "stream"}


def features_element(children: list[Element]) -> Element:
    return Element("features", ns.STREAM, {}, list(children))


def starttls_feature(required: bool) -> Element:
    el = Element("starttls", ns.TLS)
    if required:
        el.add("required")
    return el


def mechanisms_feature(names: list[str]) -> Element:
    el = Element("mechanisms", ns.SASL)
    for name in names:
        el.add("mechanism", text=name)
    return el


def channel_binding_feature(types: list[str]) -> Element:
    """XEP-0440 §3: the channel-binding types the server can check."""
    el = Element("sasl-channel-binding", ns.SASL_CB)
    for cb in types:
        el.add("channel-binding", attrs={"type": cb})
    return el


def sasl_failure(condition: str, text: str | None = None) -> Element:
    el = Element("failure", ns.SASL)
    el.add(condition)
    if text:
        el.add("text", attrs={"xml:lang": "en"}, text=text)
    return el
