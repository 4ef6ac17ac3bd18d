"""A small, slotted XML element and its serializer.

Every element carries its namespace in ``xmlns`` (never ``None`` once parsed); the serializer
writes an ``xmlns`` attribute only where an element's namespace differs from its parent's, so a
stanza parsed in ``jabber:client`` and written into a ``jabber:client`` stream comes out without
redundant declarations. Attribute names are plain local names; ``xml:lang`` is kept under the
literal key ``"xml:lang"`` because it is the only namespaced attribute XMPP core uses (RFC 6120
§4.7.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Union

Node = Union["Element", str]

# A parser turns a literal CR into LF (XML 1.0 §2.11) and a literal TAB, LF or CR in an
# attribute into a space (§3.3.3): written as character references they survive the trip.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;",
     "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)


# Hot path (serializing every routed stanza): most values need no escaping, and a regex search
# is several times cheaper than str.translate with a dict. The classes follow the tables above.
_TEXT_SPECIAL = re.compile("[" + re.escape("".join(map(chr, _TEXT_ESCAPES))) + "]").search
_ATTR_SPECIAL = re.compile("[" + re.escape("".join(map(chr, _ATTR_ESCAPES))) + "]").search


#: ' xmlns="..."' per namespace, escaped once: a server writes the same few namespaces all
#: day. Bounded (cleared when full) so that namespaces from clients cannot grow it forever.
_DECLARATIONS: dict[str, str] = {}
_MAX_DECLARATIONS = 4096


def _declaration(xmlns: str) -> str:
    if len(_DECLARATIONS) >= _MAX_DECLARATIONS:
        _DECLARATIONS.clear()
    declaration = _DECLARATIONS[xmlns] = ' xmlns="' + escape_attr(xmlns) + '"'
    return declaration


def escape_text(text: str) -> str:
    return text.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL(text) else text


def escape_attr(value: str) -> str:
    return value.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL(value) else value


class Element:
    __slots__ = ("name", "xmlns", "attrs", "children")

    def __init__(
        self,
        name: str,
        xmlns: str,
        attrs: dict[str, str] | None = None,
        children: list[Node] | None = None,
    ) -> None:
        self.name = name
        self.xmlns = xmlns
        self.attrs: dict[str, str] = attrs if attrs is not None else {}
        self.children: list[Node] = children if children is not None else []

    # -- attributes -------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrs.get(key, default)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.attrs.pop(key, None)
        else:
            self.attrs[key] = value

    # -- children ---------------------------------------------------------------------------
    def append(self, child: Node) -> Element:
        self.children.append(child)
        return self

    def add(self, name: str, xmlns: str | None = None, attrs: dict[str, str] | None = None,
            text: str | None = None) -> Element:
        """Create, append and return a child element (namespace inherited when omitted)."""
        child = Element(name, xmlns if xmlns is not None else self.xmlns, attrs)
        if text is not None:
            child.children.append(text)
        self.children.append(child)
        return child

    def elements(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child

    def find(self, name: str, xmlns: str | None = None) -> Element | None:
        for child in self.children:
            if isinstance(child, Element) and child.name == name and (
                xmlns is None or child.xmlns == xmlns
            ):
                return child
        return None

    def find_all(self, name: str | None = None, xmlns: str | None = None) -> list[Element]:
        return [
            c
            for c in self.children
            if isinstance(c, Element)
            and (name is None or c.name == name)
            and (xmlns is None or c.xmlns == xmlns)
        ]

    def first_element(self) -> Element | None:
        for child in self.children:
            if isinstance(child, Element):
                return child
        return None

    def find_text(self, name: str, xmlns: str | None = None) -> str | None:
        child = self.find(name, xmlns)
        return None if child is None else child.text

    @property
    def text(self) -> str:
        return "".join(c for c in self.children if isinstance(c, str))

    @text.setter
    def text(self, value: str) -> None:
        self.children = [c for c in self.children if isinstance(c, Element)]
        if value:
            self.children.insert(0, value)

    def copy(self) -> Element:
        """A deep copy: routing code may stamp attributes on its copy only."""
        return Element(
            self.name,
            self.xmlns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    # -- serialization ----------------------------------------------------------------------
    def serialize(self, parent_ns: str | None = None, prefixes: dict[str, str] | None = None) -> str:
        parts: list[str] = []
        self._write(parts, parent_ns, prefixes)
        return "".join(parts)

    def to_bytes(self, parent_ns: str | None = None, prefixes: dict[str, str] | None = None) -> bytes:
        return self.serialize(parent_ns, prefixes).encode()

    def _write(self, out: list[str], parent_ns: str | None, prefixes: dict[str, str] | None) -> None:
        # Hot path (every routed stanza, every archived message): one f-string per element
        # start, escapes only when needed, found by one regex search over all the attribute
        # values of the element rather than one per value.
        xmlns = self.xmlns
        ns = parent_ns
        if prefixes and (prefix := prefixes.get(xmlns)):
            tag = f"{prefix}:{self.name}"
            declaration = ""
        else:
            tag = self.name
            if xmlns != parent_ns:
                declaration = _DECLARATIONS.get(xmlns) or _declaration(xmlns)
                ns = xmlns
            else:
                declaration = ""
        attrs = self.attrs
        if not attrs:
            start = f"<{tag}{declaration}"
        elif _ATTR_SPECIAL("".join(attrs.values())):
            start = f"<{tag}{declaration}" + "".join(
                [f' {key}="{escape_attr(value)}"' for key, value in attrs.items()])
        else:
            start = f"<{tag}{declaration}" + "".join(
                [f' {key}="{value}"' for key, value in attrs.items()])
        children = self.children
        if not children:
            out.append(f"{start}/>")
            return
        if len(children) == 1:
            text = children[0]
            if isinstance(text, str):
                # A leaf holding only its text (<body/>): one string.
                if _TEXT_SPECIAL(text):
                    text = text.translate(_TEXT_ESCAPES)
                out.append(f"{start}>{text}</{tag}>")
                return
        out.append(f"{start}>")
        for child in children:
            if isinstance(child, str):
                out.append(escape_text(child))
            else:
                child._write(out, ns, prefixes)
        out.append(f"</{tag}>")

    def __repr__(self) -> str:
        return f"<Element {self.serialize()[:200]}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.name == other.name
            and self.xmlns == other.xmlns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class SharedElement(Element):
    """An element whose children are shared with its sibling copies and serialized once for
    all of them: a room's fan-out (XEP-0045 §7.4) sends one message to every occupant, only
    its ``to`` differs. The start tag is written per copy, the children's XML is cached in
    ``shared`` (one dict for all siblings) per namespace context.

    The children must not change once the first copy is serialized: code on the delivery
    path that wants to change a stanza's payload copies it first (``copy()`` gives a plain
    ``Element``)."""

    __slots__ = ("shared",)

    def __init__(self, name: str, xmlns: str, attrs: dict[str, str], children: list[Node],
                 shared: dict[object, Any]) -> None:
        super().__init__(name, xmlns, attrs, children)
        self.shared = shared

    def _write(self, out: list[str], parent_ns: str | None, prefixes: dict[str, str] | None) -> None:
        xmlns = self.xmlns
        if (prefixes and xmlns in prefixes) or not self.children:
            Element._write(self, out, parent_ns, prefixes)
            return
        tag = self.name
        declared = xmlns != parent_ns
        attrs = self.attrs
        # The start tag without 'to' (the last attribute: the fan-out adds it to a copy of
        # the shared attributes) is cached too; it is used only while the other attributes
        # are still the very objects it was made from.
        cached = self.shared.get(declared) if attrs and next(reversed(attrs)) == "to" \
            else None
        if cached is not None and len(cached[0]) == len(attrs) - 1 and all(
                attrs.get(k) is v for k, v in cached[0]):
            start = cached[1] + ' to="' + escape_attr(attrs["to"]) + '"'
        else:
            start = "<" + tag + ' xmlns="' + escape_attr(xmlns) + '"' if declared \
                else "<" + tag
            items = [(k, v) for k, v in attrs.items() if k != "to"]
            head = start + "".join([" " + k + '="' + escape_attr(v) + '"' for k, v in items])
            if attrs and next(reversed(attrs)) == "to":
                self.shared[declared] = (tuple(items), head)
                start = head + ' to="' + escape_attr(attrs["to"]) + '"'
            else:
                start += "".join([" " + k + '="' + escape_attr(v) + '"'
                                  for k, v in attrs.items()])
        key: object = (xmlns, tuple(prefixes.items())) if prefixes else xmlns
        inner: str | None = self.shared.get(key)
        if inner is None:
            parts: list[str] = []
            for child in self.children:
                if isinstance(child, str):
                    parts.append(escape_text(child))
                else:
                    child._write(parts, xmlns, prefixes)
            inner = self.shared[key] = "".join(parts)
        out.append(start + ">" + inner + "</" + tag + ">")


class WrittenContent(Element):
    """An element whose content is given as XML text (``inner``, already escaped, in the
    element's namespace), written between its tags as it is: for a result built only to be
    sent, such as a roster of hundreds of items (RFC 6121 §2.1.3), made as text instead of as
    one ``Element`` per item serialized a moment later. ``children`` stays empty: code that
    reads a payload's children must not be given one."""

    __slots__ = ("inner",)

    def __init__(self, name: str, xmlns: str, attrs: dict[str, str], inner: str) -> None:
        super().__init__(name, xmlns, attrs)
        self.inner = inner

    def _write(self, out: list[str], parent_ns: str | None, prefixes: dict[str, str] | None) -> None:
        # The content's elements are unprefixed, in ``xmlns``: the start tag declares it as
        # the default namespace wherever the parent's differs, never through a prefix.
        declaration = "" if parent_ns == self.xmlns else \
            _DECLARATIONS.get(self.xmlns) or _declaration(self.xmlns)
        attrs = "".join([f' {key}="{escape_attr(value)}"' for key, value in self.attrs.items()])
        inner = self.inner
        out.append(f"<{self.name}{declaration}{attrs}>{inner}</{self.name}>" if inner
                   else f"<{self.name}{declaration}{attrs}/>")

    def copy(self) -> Element:
        return WrittenContent(self.name, self.xmlns, dict(self.attrs), self.inner)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WrittenContent):
            return NotImplemented
        return super().__eq__(other) and self.inner == other.inner

    __hash__ = None  # type: ignore[assignment]  # mutable


class WrittenElement(Element):
    """An element whose XML is already known: written as ``xml`` into a parent of its own
    namespace (a ``jabber:client`` stream) instead of serialized again. mod_mam makes one for
    the live copy of an archived message: the archive serialized the message once, and the
    recipient's bytes are that XML with the stanza-id appended (XEP-0359 §4), so the message
    is not serialized twice.

    It shares ``attrs`` and ``children`` with the element it was made from, and keeps a
    snapshot of both (a copy of the attributes, the list of children by identity): the kept
    XML is used only while they are unchanged, else it is serialized as any element. A
    change inside a child (a child's own children or attributes, in place) is not seen: code
    on the delivery path that changes a payload copies the stanza first (``copy()`` gives a
    plain ``Element``), as with ``SharedElement``."""

    __slots__ = ("xml", "_attrs_seen", "_children_seen")

    def __init__(self, of: Element, xml: str) -> None:
        # On the message path (every archived message delivered): the slots set directly,
        # without Element.__init__'s call and defaults.
        self.name = of.name
        self.xmlns = of.xmlns
        self.attrs = attrs = of.attrs
        self.children = children = of.children
        self.xml = xml
        self._attrs_seen = attrs.copy()
        self._children_seen = children.copy()

    def _unchanged(self, parent_ns: str | None, prefixes: dict[str, str] | None) -> bool:
        # The kept XML has no xmlns declaration: it holds in a parent of the same namespace
        # only. List equality compares by identity first (in C): no Element.__eq__ calls
        # while the children are the very same objects.
        return parent_ns == self.xmlns and not (prefixes and self.xmlns in prefixes) \
            and self.attrs == self._attrs_seen and self.children == self._children_seen

    def serialize(self, parent_ns: str | None = None, prefixes: dict[str, str] | None = None) -> str:
        if self._unchanged(parent_ns, prefixes):
            return self.xml
        return Element.serialize(self, parent_ns, prefixes)

    def _write(self, out: list[str], parent_ns: str | None, prefixes: dict[str, str] | None) -> None:
        if self._unchanged(parent_ns, prefixes):
            out.append(self.xml)
        else:
            Element._write(self, out, parent_ns, prefixes)
