"""The inbox protocol (MongooseIM's open extension ``erlang-solutions.com:xmpp:inbox:0``) as
data: the query form and its XEP-0059 page parsed into ``Filters`` and a limit, the properties
of a conversation parsed from ``#conversation`` requests, and the elements the server sends
back. Pure functions, tested without a server."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from suricate.modules.mod_inbox.store import Entry, Filters
from suricate.modules.mod_mam.query import parse_stamp
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

INBOX = "erlang-solutions.com:xmpp:inbox:0"
CONVERSATION = "erlang-solutions.com:xmpp:inbox:0#conversation"
DATA_FORMS = "jabber:x:data"
RSM = "http://jabber.org/protocol/rsm"

#: Boxes every server has (the extension's "Box"); an operator adds more with ``boxes``.
RESERVED_BOXES = ("inbox", "archive", "bin")

#: The largest page an RSM <max/> asks for: a larger one is all of them (and stays within the
#: databases' 64-bit LIMIT).
_MAX_PAGE = 2**31 - 1
#: The longest mute, a thousand years ("for ever" to any client): a much longer one would end
#: after what a XEP-0082 DateTime can say (9999) and overflow the stored 64-bit microseconds.
_MAX_MUTE_SECONDS = 1000 * 365 * 86_400

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def stamp(micros: int) -> str:
    """XEP-0082 DateTime, UTC, with microseconds (they order the entries)."""
    when = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
        microsecond=micros % 1_000_000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_micros() -> int:
    return time.time_ns() // 1000


def _bool(text: str, field: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise StanzaError("bad-request", f"Invalid inbox form field value, field={field}, "
                                     f"value={text}")


def _digits(text: str) -> bool:
    """An xs:nonNegativeInteger: ASCII digits only (str.isdigit() also takes '１' or '²')."""
    return text.isascii() and text.isdigit()


def _time(text: str, field: str) -> int:
    try:
        return parse_stamp(text)
    except StanzaError:
        raise StanzaError("bad-request", f"Invalid inbox form field value, field={field}, "
                                         f"value={text}") from None


@dataclass(slots=True)
class InboxQuery:
    query_id: str | None
    filters: Filters
    max: int | None  # the client's RSM max, before capping


def parse_query(inbox: Element, boxes: tuple[str, ...]) -> InboxQuery:
    """The ``<inbox/>`` of a query IQ: its form (start, end, order, hidden_read, box, archive)
    and its XEP-0059 ``<set/>`` (max, before, after). Every problem is ``bad-request`` naming
    the field, as the extension's "Example error response" does."""
    f = Filters()
    q = InboxQuery(inbox.attrs.get("queryid"), f, None)
    for child in inbox.elements():
        if child.name == "x" and child.xmlns == DATA_FORMS:
            _parse_form(child, f, boxes)
        elif child.name == "set" and child.xmlns == RSM:
            _parse_rsm(child, q)
        else:
            raise StanzaError("bad-request", f"unexpected element <{child.name}/> in <inbox/>")
    return q


def _parse_form(form: Element, f: Filters, boxes: tuple[str, ...]) -> None:
    if form.attrs.get("type", "submit") not in ("submit", "form"):
        raise StanzaError("bad-request", "the inbox form must be of type 'submit'")
    archive: bool | None = None
    box: str | None = None
    for field in form.find_all("field", DATA_FORMS):
        var = field.attrs.get("var")
        values = [v.text for v in field.find_all("value", DATA_FORMS)]
        if var is None:
            raise StanzaError("bad-request", "a form field without 'var'")
        if var == "FORM_TYPE":
            if values and values[0].strip() != INBOX:
                raise StanzaError("bad-request", f"FORM_TYPE must be {INBOX}")
            continue
        if len(values) != 1:
            raise StanzaError("bad-request", f"field {var} needs exactly one value")
        value = values[0]
        if var == "start":
            f.start = _time(value, var)
        elif var == "end":
            f.end = _time(value, var)
        elif var == "order":
            if value not in ("asc", "desc"):
                raise StanzaError("bad-request", f"Invalid inbox form field value, "
                                                 f"field=order, value={value}")
            f.order_desc = value == "desc"
        elif var == "hidden_read":
            f.hidden_read = _bool(value, var)
        elif var == "box":
            box = value.strip()
            if box != "all" and box not in RESERVED_BOXES and box not in boxes:
                raise StanzaError("bad-request", f"Invalid inbox form field value, "
                                                 f"field=box, value={value}")
        elif var == "archive":
            archive = _bool(value, var)
        else:
            raise StanzaError("bad-request", f"Unknown inbox form field={var}, value={value}")
    if box is not None:
        f.box = None if box == "all" else box
    elif archive is not None:  # deprecated: true is the archive box, false the inbox
        f.box = "archive" if archive else "inbox"


def _parse_rsm(rsm: Element, q: InboxQuery) -> None:
    for child in rsm.elements():
        text = child.text.strip()
        if child.name == "max":
            if not _digits(text):
                raise StanzaError("bad-request", f"RSM max must be a non-negative integer, "
                                                 f"not {text!r}")
            q.max = min(int(text), _MAX_PAGE)
        elif child.name in ("before", "after"):
            if not text:
                # XEP-0059 §2.5: an empty <before/> asks for the last page (an empty
                # <after/> is no cursor at all: the first page).
                if child.name == "before":
                    q.filters.last_page = True
                continue
            bound = _time(text, child.name)
            if child.name == "before":
                q.filters.before = bound
            else:
                q.filters.after = bound
        elif child.name == "index":
            # 6.4's text; page with <before/> and <after/> instead.
            raise StanzaError("feature-not-implemented",
                              "Inbox does not expose a total count and indexes")
        else:
            raise StanzaError("bad-request", f"unexpected RSM element <{child.name}/>")


def query_form(boxes: tuple[str, ...]) -> Element:
    """The form a ``get`` of the query returns (the extension's "Querying")."""
    query = Element("query", INBOX)
    form = query.add("x", DATA_FORMS, {"type": "form"})
    form.add("field", DATA_FORMS, {"type": "hidden", "var": "FORM_TYPE"}).add(
        "value", DATA_FORMS, text=INBOX)
    form.add("field", DATA_FORMS, {"var": "start", "type": "text-single"})
    form.add("field", DATA_FORMS, {"var": "end", "type": "text-single"})
    order = form.add("field", DATA_FORMS, {"var": "order", "type": "list-single"})
    order.add("value", DATA_FORMS, text="desc")
    for value, label in (("asc", "Ascending by timestamp"), ("desc", "Descending by timestamp")):
        order.add("option", DATA_FORMS, {"label": label}).add("value", DATA_FORMS, text=value)
    form.add("field", DATA_FORMS, {"var": "hidden_read", "type": "text-single"}).add(
        "value", DATA_FORMS, text="false")
    box = form.add("field", DATA_FORMS, {"var": "box", "type": "list-single"})
    box.add("value", DATA_FORMS, text="all")
    for name in ("all", *RESERVED_BOXES, *boxes):
        box.add("option", DATA_FORMS, {"label": name}).add("value", DATA_FORMS, text=name)
    form.add("field", DATA_FORMS, {"var": "archive", "type": "boolean"}).add(
        "value", DATA_FORMS, text="false")
    return query


def conversation_form(boxes: tuple[str, ...]) -> Element:
    """The properties a conversation has (a ``get`` of ``#conversation`` without a jid)."""
    query = Element("query", CONVERSATION)
    form = query.add("x", DATA_FORMS, {"type": "form"})
    # XEP-0068: the form's type is the namespace of the request it belongs to (6.4's too).
    form.add("field", DATA_FORMS, {"type": "hidden", "var": "FORM_TYPE"}).add(
        "value", DATA_FORMS, text=CONVERSATION)
    for var, type_, value in (("archive", "boolean", "false"), ("read", "boolean", "false"),
                              ("mute", "text-single", "0")):
        form.add("field", DATA_FORMS, {"var": var, "type": type_}).add(
            "value", DATA_FORMS, text=value)
    box = form.add("field", DATA_FORMS, {"var": "box", "type": "list-single"})
    box.add("value", DATA_FORMS, text="inbox")
    for name in (*RESERVED_BOXES, *boxes):
        box.add("option", DATA_FORMS, {"label": name}).add("value", DATA_FORMS, text=name)
    return query


@dataclass(slots=True)
class Properties:
    box: str | None = None
    mute_seconds: int | None = None
    read: bool | None = None


def parse_properties(query: Element, boxes: tuple[str, ...]) -> Properties:
    """The ``<box/>``, ``<archive/>``, ``<mute/>`` and ``<read/>`` of a ``#conversation``
    set. An unknown box, a negative or non-numeric mute, or an unknown property is
    ``bad-request``; a set that changes nothing too."""
    p = Properties()
    for child in query.elements():
        text = child.text.strip()
        if child.name == "box":
            if text not in RESERVED_BOXES and text not in boxes:
                raise StanzaError("bad-request", "invalid-box")  # 6.4's text
            p.box = text
        elif child.name == "archive":
            p.box = "archive" if _bool(text, "archive") else "inbox"
        elif child.name == "mute":
            if not _digits(text):
                raise StanzaError("bad-request", "mute is a number of seconds (0 unmutes)")
            p.mute_seconds = int(text)
            if p.mute_seconds > _MAX_MUTE_SECONDS:
                # Its end would overflow the stored 64-bit microseconds (and any DateTime).
                raise StanzaError("bad-request", f"mute is at most {_MAX_MUTE_SECONDS} seconds "
                                                 "(1000 years)")
        elif child.name == "read":
            p.read = _bool(text, "read")
        else:
            raise StanzaError("bad-request", f"unknown property <{child.name}/>")
    if p.box is None and p.mute_seconds is None and p.read is None:
        raise StanzaError("bad-request", "no-property")  # 6.4's text
    return p


def mute_text(muted_until: int, now: int) -> str:
    return stamp(muted_until) if muted_until > now else "0"


def add_properties(parent: Element, xmlns: str, entry: Entry, now: int,
                   read: bool = True) -> None:
    parent.add("box", xmlns, text=entry.box)
    parent.add("archive", xmlns, text="true" if entry.box == "archive" else "false")
    parent.add("mute", xmlns, text=mute_text(entry.muted_until, now))
    if read:
        parent.add("read", xmlns, text="true" if entry.unread == 0 else "false")
