"""The room's fan-out serializes a message's children once for all occupants
(``SharedElement``): the bytes must equal those of a plain copy, in every namespace
context, and a copy taken on the delivery path is a plain, independent element."""

from __future__ import annotations

from typing import Any

from suricate.xml import ns
from suricate.xml.element import Element, SharedElement

STREAM_PREFIXES = {"http://etherx.jabber.org/streams": "stream"}


def _message() -> Element:
    m = Element("message", ns.CLIENT, {"type": "groupchat", "from": "r@conference.x/n"})
    m.add("body", text="a <b> & \"c\"\r")
    m.add("stanza-id", "urn:xmpp:sid:0", {"id": "1", "by": "r@conference.x"})
    return m


def test_shared_children_serialize_like_plain_copies() -> None:
    m = _message()
    shared: dict[object, Any] = {}
    for to in ("a@x/1", "b@x/2", "c@y/3"):
        attrs = dict(m.attrs, to=to)
        fast = SharedElement(m.name, m.xmlns, dict(attrs), m.children, shared)
        slow = Element(m.name, m.xmlns, dict(attrs), m.children)
        assert fast.to_bytes(ns.CLIENT, STREAM_PREFIXES) == slow.to_bytes(ns.CLIENT,
                                                                          STREAM_PREFIXES)
        assert fast.serialize() == slow.serialize()  # another context: its own cache entry
        # Inside a wrapper in another namespace (a carbon copy, a forward).
        wrapper = Element("forwarded", "urn:xmpp:forward:0", {}, [fast])
        plain_wrapper = Element("forwarded", "urn:xmpp:forward:0", {}, [slow])
        assert wrapper.serialize(ns.CLIENT) == plain_wrapper.serialize(ns.CLIENT)
    # One start tag (without "to") and one payload per namespace context, not per copy.
    assert len(shared) == 4


def test_copy_of_a_shared_element_is_independent() -> None:
    m = _message()
    fast = SharedElement(m.name, m.xmlns, dict(m.attrs, to="a@x/1"), m.children, {})
    fast.serialize()
    copy = fast.copy()
    assert type(copy) is Element
    copy.add("delay", ns.DELAY)
    assert fast.find("delay", ns.DELAY) is None
    assert "delay" not in fast.serialize()


def test_a_changed_attribute_is_not_served_from_the_cache() -> None:
    m = _message()
    shared: dict[object, Any] = {}
    first = SharedElement(m.name, m.xmlns, dict(m.attrs, to="a@x/1"), m.children, shared)
    first.serialize(ns.CLIENT)
    second = SharedElement(m.name, m.xmlns, dict(m.attrs, to="b@x/2"), m.children, shared)
    second.attrs["from"] = "other@conference.x/n"  # a hook changed it on its copy
    second.attrs["to"] = second.attrs.pop("to")  # 'to' last again
    plain = Element(m.name, m.xmlns, dict(second.attrs), m.children)
    assert second.serialize(ns.CLIENT) == plain.serialize(ns.CLIENT)
    third = SharedElement(m.name, m.xmlns, {"to": "c@x/3", **m.attrs}, m.children, shared)
    assert third.serialize(ns.CLIENT) == Element(m.name, m.xmlns, dict(third.attrs),
                                                 m.children).serialize(ns.CLIENT)
