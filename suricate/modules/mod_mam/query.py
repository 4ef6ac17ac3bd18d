"""Archive queries as data: the XEP-0313 form and the XEP-0059 result set, parsed into a
``Query`` (pure functions, tested without a server), and message ids as text.

Ids are 64-bit integers, ``microseconds << 8 | node`` (DESIGN §7): ordering by id is ordering
by time, and a time bound of the form (``start``, ``end``) is an id bound. XEP-0359 wants the
id as a string: its decimal spelling.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

from suricate.jid import JID, InvalidJID
from suricate.protocol.errors import StanzaError
from suricate.xml.element import Element

MAM = "urn:xmpp:mam:2"
MAM_EXTENDED = "urn:xmpp:mam:2#extended"
RSM = "http://jabber.org/protocol/rsm"
DATA_FORMS = "jabber:x:data"
XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"  # XEP-0122
#: MongooseIM's field for full text search (its own namespace, as XEP-0068 §3 wants for a
#: field outside the registered FORM_TYPE).
FULL_TEXT_FIELD = "{https://erlang-solutions.com/}full-text-search"

# XEP-0313 §4.1.1 (with, start, end), §4.1.3 (#extended: before-id, after-id, ids).
_BASIC_FIELDS = ("with", "start", "end")
_EXTENDED_FIELDS = ("before-id", "after-id", "ids")


def id_to_text(mam_id: int) -> str:
    return str(mam_id)


def id_from_text(text: str) -> int | None:
    """An id a client sent back; None if it cannot be one of ours."""
    if not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value < 2**63 else None


def id_to_micros(mam_id: int) -> int:
    return mam_id >> 8


def stamp_of(mam_id: int) -> str:
    """XEP-0082 DateTime of an id, UTC, microseconds kept (they order messages)."""
    micros = id_to_micros(mam_id)
    when = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(
        microsecond=micros % 1_000_000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> int:
    """XEP-0082 DateTime -> microseconds since the epoch; bad-request if it is not one."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise StanzaError("bad-request", f"not an XEP-0082 DateTime: {text}") from None
    if when.tzinfo is None:  # XEP-0082 §3.2: a time zone is required; read as UTC
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(slots=True)
class Query:
    """What a client asked for: filters (which messages) and a page (which of them)."""

    query_id: str | None = None
    with_jid: JID | None = None
    start: int | None = None  # microseconds, inclusive
    end: int | None = None  # microseconds, inclusive
    after_id: int | None = None  # exclusive (#extended)
    before_id: int | None = None  # exclusive (#extended)
    ids: list[int] | None = None  # #extended
    full_text: str | None = None
    # XEP-0059
    max: int | None = None
    after: int | None = None  # RSM <after/>: page forward from there
    before: int | None = None  # RSM <before/>: page backward from there
    last_page: bool = False  # RSM <before/> empty: the last page
    index: int | None = None
    flip: bool = False  # XEP-0313 §4.2 <flip-page/>
    #: Ids named by the client that must exist (item-not-found otherwise, XEP-0313 §4.1.3,
    #: XEP-0059 §2.6).
    must_exist: list[int] = field(default_factory=list)

    @property
    def backward(self) -> bool:
        return self.before is not None or self.last_page


def parse_query(query: Element, *, full_text_search: bool) -> Query:
    """Parse ``<query xmlns='urn:xmpp:mam:2'>`` of an IQ set; StanzaError for bad input."""
    q = Query(query_id=query.attrs.get("queryid"))
    form = query.find("x", DATA_FORMS)
    if form is not None:
        _parse_form(form, q, full_text_search)
    rsm = query.find("set", RSM)
    if rsm is not None:
        _parse_rsm(rsm, q)
    q.flip = query.find("flip-page", MAM) is not None
    return q


def _parse_form(form: Element, q: Query, full_text_search: bool) -> None:
    if form.attrs.get("type", "submit") != "submit":
        raise StanzaError("bad-request", "the query form must be of type 'submit'")
    known = set(_BASIC_FIELDS) | set(_EXTENDED_FIELDS)
    if full_text_search:
        known.add(FULL_TEXT_FIELD)
    for fld in form.find_all("field", DATA_FORMS):
        var = fld.attrs.get("var", "")
        values = [v.text for v in fld.find_all("value", DATA_FORMS)]
        if var == "FORM_TYPE":
            if values != [MAM]:
                raise StanzaError("bad-request", f"FORM_TYPE must be {MAM}")
            continue
        if var not in known:
            # XEP-0313 §4.1.5: "If a client includes a form field that the server does not
            # recognise, the server MUST respond with a 'feature-not-implemented' error"
            # (ignoring it would return more than the client asked for).
            raise StanzaError("feature-not-implemented", f"unknown field: {var}")
        if var == "ids":
            q.ids = [_known_id(v) for v in values]
            # XEP-0313 §4.1.3: each of them must be in the archive (item-not-found).
            q.must_exist.extend(dict.fromkeys(q.ids))
            continue
        if len(values) > 1:
            raise StanzaError("bad-request", f"field {var} takes one value")
        value = values[0].strip() if values else ""
        if not value:
            continue  # an empty field filters nothing
        if var == "with":
            try:
                q.with_jid = JID.parse(value)
            except (InvalidJID, ValueError):
                raise StanzaError("bad-request", f"bad JID in 'with': {value}") from None
        elif var == "start":
            q.start = parse_stamp(value)
        elif var == "end":
            q.end = parse_stamp(value)
        elif var == "after-id":
            q.after_id = _known_id(value)
            q.must_exist.append(q.after_id)
        elif var == "before-id":
            q.before_id = _known_id(value)
            q.must_exist.append(q.before_id)
        else:
            q.full_text = value


def _known_id(text: str) -> int:
    mam_id = id_from_text(text.strip())
    if mam_id is None:
        # Not an id we could have given: it names no message of the archive.
        raise StanzaError("item-not-found", f"no message with id {text}")
    return mam_id


def _parse_rsm(rsm: Element, q: Query) -> None:
    text = rsm.find_text("max", RSM)
    if text is not None:
        try:
            q.max = int(text)
        except ValueError:
            raise StanzaError("bad-request", "RSM max must be an integer") from None
        if q.max < 0:
            raise StanzaError("bad-request", "RSM max must not be negative")
    after = rsm.find("after", RSM)
    before = rsm.find("before", RSM)
    if after is not None and before is not None:
        raise StanzaError("bad-request", "RSM after and before together")
    if after is not None:
        if not after.text:
            raise StanzaError("bad-request", "RSM after must name an item")
        q.after = _known_id(after.text)
        q.must_exist.append(q.after)
    if before is not None:
        if before.text:
            q.before = _known_id(before.text)
            q.must_exist.append(q.before)
        else:
            q.last_page = True  # XEP-0059 §2.5: empty <before/> asks for the last page
    index = rsm.find_text("index", RSM)
    if index is not None:
        if after is not None or before is not None:
            raise StanzaError("bad-request", "RSM index with after or before")
        try:
            q.index = int(index)
        except ValueError:
            raise StanzaError("bad-request", "RSM index must be an integer") from None
        if q.index < 0:
            raise StanzaError("bad-request", "RSM index must not be negative")


def fields_form(full_text_search: bool) -> Element:
    """XEP-0313 §4.1.5: the form a client fills in (answer to a query ``get``)."""
    form = Element("x", DATA_FORMS, {"type": "form"})
    hidden = form.add("field", DATA_FORMS, {"var": "FORM_TYPE", "type": "hidden"})
    hidden.add("value", DATA_FORMS, text=MAM)
    form.add("field", DATA_FORMS, {"var": "with", "type": "jid-single"})
    form.add("field", DATA_FORMS, {"var": "start", "type": "text-single"})
    form.add("field", DATA_FORMS, {"var": "end", "type": "text-single"})
    form.add("field", DATA_FORMS, {"var": "before-id", "type": "text-single"})
    form.add("field", DATA_FORMS, {"var": "after-id", "type": "text-single"})
    # XEP-0313 §4.1.5: 'ids' is list-multi, with no options (every id of the archive would
    # be one) but an XEP-0122 §3.1 <validate/> whose <open/> admits any value.
    ids = form.add("field", DATA_FORMS, {"var": "ids", "type": "list-multi"})
    ids.add("validate", XDATA_VALIDATE, {"datatype": "xs:string"}).add("open", XDATA_VALIDATE)
    if full_text_search:
        form.add("field", DATA_FORMS, {"var": FULL_TEXT_FIELD, "type": "text-single"})
    return form


def search_words(text: str) -> list[str]:
    """The words a full text search looks for (all of them, in any order), each without the
    punctuation around it: "tonight?" or "(wine)," is looked for as "tonight" or "wine", as
    MongooseIM 6.4 drops punctuation from what it searches. Only the query is trimmed (the
    archive keeps bodies as written, no work on the message path): a word is found inside
    a longer one, so "tonight" still finds "tonight?"; punctuation inside a word stays
    ("don't", "e-mail"), and a word made of punctuation only is looked for as it is."""
    return [_trim_punctuation(word) for word in normalize_body(text).split()]


def _trim_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[start:end] or word


def normalize_body(text: str) -> str:
    """What the archive keeps of a body for searching: the body in lower case. Its
    whitespace is kept as written: a search looks for each of its words on its own
    (``search_words``, one LIKE each), and no word holds whitespace, so collapsing it would
    change no answer. Archived on every message: lower() alone is a fraction of what
    splitting and joining the words cost."""
    return text.lower()
