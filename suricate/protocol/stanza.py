"""Stanzas crossing stream kinds. Inside the server every stanza is in ``jabber:client``; a
stanza read from a ``jabber:server`` (RFC 6120 §4.8.3) or ``jabber:component:accept``
(XEP-0114) stream is moved into it once on arrival. On the way out nothing is rewritten: the
serializer is told the parent namespace is ``jabber:client`` and omits it, so the stanza lands
in whatever default namespace the outgoing stream declared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from suricate.protocol.stream import STREAM_PREFIXES as PREFIXES
from suricate.xml import ns
from suricate.xml.element import Element

if TYPE_CHECKING:
    from suricate.jid import JID

STANZA_NAMES = frozenset({"message", "presence", "iq"})

#: RFC 6121 §5.2.2: the values a message's 'type' may have.
MESSAGE_TYPES = frozenset({"chat", "error", "groupchat", "headline", "normal"})


def message_type(stanza: Element) -> str:
    """The type a message is handled as. RFC 6121 §5.2.2: a message with no 'type', or with
    one the application does not understand, MUST be considered "normal". The stanza keeps
    its attribute: only the decisions about it (route, store, copy) read "normal"."""
    stype = stanza.attrs.get("type", "normal")
    return stype if stype in MESSAGE_TYPES else "normal"


def to_internal(stanza: Element, stream_ns: str) -> Element:
    """Move ``stanza`` and its descendants from ``stream_ns`` to ``jabber:client``, in place.

    Only elements of the stream's content namespace move (the stanza itself, its ``body``,
    ``error`` ...): payloads in their own namespaces keep them."""
    stack = [stanza]
    while stack:
        el = stack.pop()
        if el.xmlns == stream_ns:
            el.xmlns = ns.CLIENT
            stack.extend(el.elements())
    return stanza


def to_wire(stanza: Element) -> bytes:
    """Serialize an internal stanza for any XMPP stream whose default namespace carries it."""
    return stanza.to_bytes(ns.CLIENT, PREFIXES)


def result_reply(iq: Element, frm: JID, to: JID, payload: Element | None = None) -> Element:
    """RFC 6120 §8.2.3: the result of ``iq``, a request ``frm`` sent to ``to``: addressed
    back to its sender, with the request's id."""
    attrs = {"type": "result", "from": str(to), "to": str(frm)}
    if "id" in iq.attrs:
        attrs["id"] = iq.attrs["id"]
    return Element("iq", ns.CLIENT, attrs, [] if payload is None else [payload])
