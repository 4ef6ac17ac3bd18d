"""Incremental XMPP stream parser on top of expat (C speed).

RFC 6120 §11.1 forbids comments, processing instructions, internal or external DTD subsets,
and entity references other than the five predefined ones; each is refused with the
``restricted-xml`` stream error (§4.9.3.18). Anything expat cannot parse is ``not-well-formed``
(§4.9.3.13). A stanza larger than the listener's ``max_stanza_size`` is a ``policy-violation``
(§4.9.3.14), detected while it streams in, so an endless stanza never fills memory; the same
limit applies to a tag that never ends (an endless attribute, an endless stream header), which
expat buffers whole before it reports anything. An encoding declaration other than UTF-8 is
``unsupported-encoding`` (§11.6, §4.9.3.22).

expat reports nothing of a token (a start tag with its attributes, a comment, a declaration)
until its end, and each ``Parse`` of more bytes scans the unfinished token again from its
start: a long tag arriving in small reads cost time quadratic in its length (16 MiB of one
attribute in 4 KiB reads held the event loop, every connection's, for 19 s). Past
``DEFER_TOKEN`` bytes of one unfinished token the parser holds what arrives until it is as
long again as the token (each rescan then pays for itself), or until a ``>`` may end the
token (once per token; after that a ``>``, which the peer can put in every quoted value, gets
a rescan only when the held bytes are a sixteenth of the token). The newer expat (2.6) does
the same itself ("reparse deferral"); this one (2.5, bundled with CPython 3.11) does not.

A parser lives for one stream: at every stream restart (after STARTTLS, after SASL) the caller
makes a new one, as §4.3.3 and §6.4.6 require.
"""

from __future__ import annotations

import pyexpat
import re
from dataclasses import dataclass
from typing import Any

from suricate.xml import ns
from suricate.xml.element import Element, escape_attr

MAX_DEPTH = 64  # deeper nesting has no use in XMPP and costs stack: policy-violation
# An unfinished token longer than this (no XMPP tag is) is fed to expat only in growing steps.
DEFER_TOKEN = 64 * 1024


class XMLStreamError(Exception):
    """The peer sent bytes that end the stream with ``condition`` (RFC 6120 §4.9.3).

    ``events`` are those the same ``feed`` completed before the bad bytes: a caller that
    handles them before ending the stream behaves the same however the bytes were chunked."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.events: list[Event] = []


@dataclass(slots=True)
class StreamOpen:
    """The stream header: ``name``/``xmlns`` of the root and its attributes.

    ``content_ns`` is the default namespace the header declares (jabber:client, jabber:server,
    jabber:component:accept); ``prefixes`` maps every declared prefix to its namespace.
    """

    name: str
    xmlns: str
    attrs: dict[str, str]
    content_ns: str | None
    prefixes: dict[str, str]


@dataclass(slots=True)
class StreamClose:
    pass


Event = StreamOpen | Element | StreamClose

_XML_LANG = ns.XML + " lang"
_UNDEFINED_ENTITY = pyexpat.errors.codes[pyexpat.errors.XML_ERROR_UNDEFINED_ENTITY]
# A closing tag (or a whole empty-element tag) and nothing but whitespace after it. An
# attribute value holding '>' does not match: the parser then just stays (conservative).
# (expat reports an empty-element tag's end after its "/>", a closing tag's at its "<".)
_BOUNDARY = re.compile(rb"(?:<[^<>]*>)?\s*")


def _split(name: str) -> tuple[str, str]:
    uri, sep, local = name.rpartition(" ")
    return (local, uri) if sep else (name, "")


class StreamParser:
    __slots__ = (
        "_parser", "_events", "_stack", "_depth", "_max_stanza_size", "_stanza_start",
        "_fed", "_ns_decls", "_closed", "_error", "_last_end", "idle", "_held", "_held_size",
        "_held_need", "_token_at", "_gt_tried",
    )

    def __init__(self, max_stanza_size: int | None = None) -> None:
        self._max_stanza_size = max_stanza_size
        self._events: list[Event] = []
        self._stack: list[Element] = []
        self._depth = 0
        self._stanza_start = -1
        self._fed = 0
        self._ns_decls: dict[str, str] = {}
        self._closed = False
        self._error: XMLStreamError | None = None
        self._last_end = -1
        # True when everything fed so far ended at a stanza boundary (only whitespace after
        # the last top-level element): the parser then holds no partial token and can be
        # dropped and re-made (``primed``) without losing a byte.
        self.idle = False
        # Bytes held back while expat holds a long unfinished token (None: not deferring),
        # their size, the size that makes a rescan worth it, expat's position when last read
        # (where the unfinished token starts, or before it), and whether a '>' already had
        # its rescan without ending that token.
        self._held: list[bytes] | None = None
        self._held_size = 0
        self._held_need = 0
        self._token_at = 0
        self._gt_tried = False
        p = pyexpat.ParserCreate("UTF-8", " ")
        p.buffer_text = True
        p.ordered_attributes = False
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_decl
        p.CommentHandler = self._restricted
        p.ProcessingInstructionHandler = self._restricted
        p.StartDoctypeDeclHandler = self._restricted
        p.EntityDeclHandler = self._restricted
        p.UnparsedEntityDeclHandler = self._restricted
        p.NotationDeclHandler = self._restricted
        p.ExternalEntityRefHandler = self._restricted_ref
        p.SkippedEntityHandler = self._restricted
        p.DefaultHandler = self._default
        p.XmlDeclHandler = self._xml_decl
        self._parser = p

    # -- public -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the complete events it finished (may be empty)."""
        if self._error is not None:
            raise XMLStreamError(self._error.condition, self._error.text)  # errors are final
        if self._closed:
            return []
        self._fed += len(data)
        try:
            if self._held is not None:
                data = self._release_held(data)
                if not data:
                    return []
            self._parse(data)
        except XMLStreamError as exc:
            self._error = exc
            exc.events, self._events = self._events, []
            raise
        self._update_idle(data)
        events, self._events = self._events, []
        return events

    def release(self) -> None:
        """Free expat now: its handlers are our bound methods, a reference cycle the garbage
        collector would only break at some later full collection (after a stream restart, or
        when an idle connection hibernates, that memory should go at once)."""
        self._parser = None  # type: ignore[assignment]
        self._closed = True
        self._stack.clear()

    @classmethod
    def primed(cls, max_stanza_size: int | None, header: bytes) -> StreamParser:
        """A parser already inside the stream ``header`` opened: for a connection that dropped
        its parser while idle (DESIGN §3) and now receives bytes again."""
        parser = cls(max_stanza_size)
        parser.feed(header)
        parser._last_end = -1  # byte counts stay those of expat, header included
        return parser

    def _update_idle(self, data: bytes) -> None:
        if self._depth != 1:
            self.idle = False
            return
        start = self._last_end - (self._fed - len(data))
        if start >= 0:
            # The last top-level element ended in this chunk: idle if what follows is its
            # closing tag (when expat reported the tag's start) and whitespace.
            self.idle = _BOUNDARY.fullmatch(data, start) is not None
        elif not data.strip():
            pass  # whitespace keepalive: the previous state stands
        else:
            self.idle = False

    def _parse(self, data: bytes) -> None:
        try:
            self._parser.Parse(data, False)
        except pyexpat.ExpatError as exc:
            if exc.code == _UNDEFINED_ENTITY:
                # §11.1: only the five predefined entities may be referenced.
                raise XMLStreamError("restricted-xml", "entity reference") from None
            raise XMLStreamError("not-well-formed", pyexpat.errors.messages[exc.code]) from None
        fed = self._fed
        if fed - self._token_at >= DEFER_TOKEN:
            # After Parse, expat's position is the start of the token it could not finish
            # yet. It only moves forward: read once per DEFER_TOKEN bytes, not at every read.
            token_at = self._parser.CurrentByteIndex
            if fed - token_at < DEFER_TOKEN:
                self._gt_tried = False
            else:
                if token_at != self._token_at:  # another token than the one deferred last
                    self._gt_tried = False
                self._defer(token_at)
            self._token_at = token_at
        limit = self._max_stanza_size
        if limit is not None:
            if self._stanza_start >= 0:
                pending = fed - self._stanza_start
            else:
                # Between stanzas: what expat holds back is the unfinished token after its last
                # event (an endless start tag or header is one token, never reported).
                pending = fed - max(self._parser.CurrentByteIndex, 0)
            if pending > limit:
                raise XMLStreamError("policy-violation", "stanza too large")

    def _release_held(self, data: bytes) -> bytes:
        """While deferring: hold ``data``; return what to parse now (b"" for nothing)."""
        held = self._held
        assert held is not None
        held.append(data)
        self._held_size += len(data)
        if self._held_size < self._held_need:
            if b">" not in data or (self._gt_tried
                                    and self._held_size * 16 < self._held_need):
                self._check_limit()
                return b""
            self._gt_tried = True  # this '>' gets its rescan; if it ends nothing, no more
        self._held = None
        return b"".join(held)

    def _defer(self, token_at: int) -> None:
        """Hold the next bytes until the long unfinished token at ``token_at`` may end."""
        self._held = []
        self._held_size = 0
        self._held_need = self._fed - token_at
        self.idle = False

    def _check_limit(self) -> None:
        """``max_stanza_size`` while bytes are held back (``_parse`` checks it inline)."""
        limit = self._max_stanza_size
        if limit is not None:
            start = self._stanza_start
            pending = self._fed - (start if start >= 0 else max(self._parser.CurrentByteIndex, 0))
            if pending > limit:
                raise XMLStreamError("policy-violation", "stanza too large")

    @property
    def depth(self) -> int:
        return self._depth

    # -- expat callbacks ----------------------------------------------------------------------
    def _restricted(self, *args: Any) -> None:
        raise XMLStreamError("restricted-xml")

    def _restricted_ref(self, *args: Any) -> int:
        raise XMLStreamError("restricted-xml")

    def _default(self, data: str) -> None:
        # The default handler sees what no other handler took; an entity reference that
        # reaches it (e.g. "&foo;" after a DTD we refused anyway) is restricted.
        if data.startswith("&"):
            raise XMLStreamError("restricted-xml")

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        # RFC 6120 §11.6: UTF-8 only; another declared encoding is unsupported-encoding.
        if encoding is not None and encoding.upper() not in ("UTF-8", "UTF8"):
            raise XMLStreamError("unsupported-encoding")

    def _ns_decl(self, prefix: str | None, uri: str) -> None:
        if self._depth == 0:
            self._ns_decls[prefix or ""] = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        local, uri = _split(name)
        if attrs:
            clean: dict[str, str] = {}
            for key, value in attrs.items():
                if " " in key:
                    if key == _XML_LANG:
                        clean["xml:lang"] = value
                    # Other namespaced attributes carry no meaning in XMPP core; drop them.
                else:
                    clean[key] = value
            attrs = clean
        depth = self._depth
        self._depth = depth + 1
        if depth == 0:
            content_ns = self._ns_decls.get("")
            prefixes = {k: v for k, v in self._ns_decls.items() if k}
            self._events.append(StreamOpen(local, uri, attrs, content_ns, prefixes))
            return
        if depth >= MAX_DEPTH:
            raise XMLStreamError("policy-violation", "nesting too deep")
        element = Element(local, uri, attrs)
        if depth == 1:
            self._stanza_start = self._parser.CurrentByteIndex
        else:
            self._stack[-1].children.append(element)
        self._stack.append(element)

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._closed = True
            self._events.append(StreamClose())
            return
        element = self._stack.pop()
        if self._depth == 1:
            self._last_end = self._parser.CurrentByteIndex
            limit = self._max_stanza_size
            if limit is not None and self._parser.CurrentByteIndex - self._stanza_start > limit:
                raise XMLStreamError("policy-violation", "stanza too large")
            self._stanza_start = -1
            self._events.append(element)

    def _chars(self, data: str) -> None:
        if self._depth >= 2:
            children = self._stack[-1].children
            if children and isinstance(children[-1], str):
                # A text longer than expat's buffer comes in pieces. "children[-1] += data"
                # would copy the whole text at every piece (the list holds a reference), so a
                # 16 MiB body took 13 s of the event loop; a local that holds the only
                # reference is grown in place by CPython (amortized linear).
                text: str = children.pop()  # type: ignore[assignment]
                text += data
                children.append(text)
            else:
                children.append(data)
        elif self._depth == 1 and data.strip():
            # RFC 6120 §11.7: only whitespace may appear between top-level elements.
            raise XMLStreamError("not-well-formed", "text outside a stanza")


def parse_fragment(xml: str, default_ns: str | None = None) -> list[Element]:
    """The top-level elements of ``xml``, a sequence of serialized elements (as stored by
    modules: private XML, vCards, offline stanzas), parsed with the same RFC 6120 §11
    restrictions as a stream; raises ``XMLStreamError`` on anything else.

    ``default_ns`` is the namespace of elements written without one: stanzas are serialized
    inside a ``jabber:client`` stream, so they carry no xmlns of their own."""
    parser = StreamParser()
    root = (b"<fragment>" if default_ns is None
            else b"<fragment xmlns='" + escape_attr(default_ns).encode() + b"'>")
    events = parser.feed(root + xml.encode() + b"</fragment>")
    return [e for e in events if isinstance(e, Element)]
