"""The XEP-0055 user directory of the rdbms backend: what of each vCard is searchable, and how a
submitted search form becomes a query (MongooseIM 6.4's form, columns and matching rules).

Every stored vCard has one row in ``vcard_search`` (written with the vCard, in
``VcardStore.set_vcard``) holding its searchable fields twice: as written, for the result
form, and lower-cased, for matching. A value is matched whole, ignoring case; ``*`` in it
stands for any run of characters, so ``ali*`` finds every value starting with "ali" (6.4
knows only the trailing star; one elsewhere is accepted here too). The ldap backend has its
own directory (``ldap.py``); both answer through ``ModVcard``'s search form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment

if TYPE_CHECKING:
    from suricate.modules.mod_vcard.store import VcardStore

__all__ = [
    "COLUMNS",
    "FIELDS",
    "REPORTED",
    "Criterion",
    "SearchItem",
    "criteria",
    "index_row",
    "like_pattern",
]


@dataclass(frozen=True, slots=True)
class SearchField:
    var: str  # the form field (6.4's names)
    label: str
    column: str  # the column of vcard_search shown in results; "l" + it is matched
    path: tuple[str, ...]  # where in the vCard, below <vCard/>


#: 6.4's search form for the rdbms backend, in its order. ``user`` is the username itself.
FIELDS: tuple[SearchField, ...] = (
    SearchField("user", "User", "username", ()),
    SearchField("fn", "Full Name", "fn", ("FN",)),
    SearchField("first", "Given Name", "given", ("N", "GIVEN")),
    SearchField("middle", "Middle Name", "middle", ("N", "MIDDLE")),
    SearchField("last", "Family Name", "family", ("N", "FAMILY")),
    SearchField("nick", "Nickname", "nickname", ("NICKNAME",)),
    SearchField("bday", "Birthday", "bday", ("BDAY",)),
    SearchField("ctry", "Country", "ctry", ("ADR", "CTRY")),
    SearchField("locality", "City", "locality", ("ADR", "LOCALITY")),
    SearchField("email", "Email", "email", ("EMAIL", "USERID")),
    SearchField("orgname", "Organization Name", "orgname", ("ORG", "ORGNAME")),
    SearchField("orgunit", "Organization Unit", "orgunit", ("ORG", "ORGUNIT")),
)
_BY_VAR = {f.var: f for f in FIELDS}
#: The columns of a result, after the JID (6.4's reported fields: all but ``user``).
REPORTED: tuple[SearchField, ...] = FIELDS[1:]
#: The vCard fields kept in vcard_search, each also lower-cased as "l" + column.
COLUMNS: tuple[str, ...] = tuple(f.column for f in REPORTED)

#: Longest value kept for a field: MySQL keys its search columns as VARCHAR(191) (utf8mb4
#: index limit); every backend keeps the same so that a search finds the same everywhere.
MAX_VALUE = 191


def index_row(xml: str) -> dict[str, str]:
    """The searchable fields of a stored vCard (``COLUMNS`` -> value, "" when absent); an
    unreadable vCard has none."""
    try:
        elements = parse_fragment(xml)
    except XMLStreamError:
        elements = []
    vcard = elements[0] if len(elements) == 1 else None
    return {f.column: _value(vcard, f.path) if vcard is not None else "" for f in REPORTED}


def _value(vcard: Element, path: tuple[str, ...]) -> str:
    node: Element | None = vcard
    for name in path:
        assert node is not None
        child = node.find(name, ns.VCARD)
        if child is None and name == "USERID":
            # Clients older than XEP-0054 §9's rule put the address as the EMAIL's text.
            return node.text.strip()[:MAX_VALUE]
        if child is None:
            return ""
        node = child
    assert node is not None
    return node.text.strip()[:MAX_VALUE]


@dataclass(frozen=True, slots=True)
class Criterion:
    """One filled-in field of a submitted form: its lower-case column equals ``value``, or is
    ``LIKE`` it when ``pattern`` (escaped with ``!``)."""

    column: str
    value: str
    pattern: bool


def criteria(submitted: Sequence[tuple[str, str]]) -> list[Criterion]:
    """The criteria of a form's (var, value) pairs; a field not in the form or left empty
    is not one (6.4)."""
    out = []
    for var, value in submitted:
        field = _BY_VAR.get(var)
        value = value.strip().lower()
        if field is None or not value:
            continue
        column = "username" if field.var == "user" else "l" + field.column
        if "*" in value:
            out.append(Criterion(column, like_pattern(value), True))
        else:
            out.append(Criterion(column, value[:MAX_VALUE], False))
    return out


def like_pattern(value: str) -> str:
    """``value`` as a LIKE pattern with ``ESCAPE '!'``: ``*`` is ``%``, and the characters
    LIKE would read as wildcards are taken literally."""
    escaped = re.sub(r"([!%_])", r"!\1", value)
    return re.sub(r"\*+", "%", escaped)


@dataclass(frozen=True, slots=True)
class SearchItem:
    """One user found: the username and the reported fields (form var -> value), in the
    directory's ``reported`` order."""

    username: str
    fields: tuple[tuple[str, str], ...]


class RdbmsDirectory:
    """The directory as ``ModVcard`` asks it (as the ldap backend's ``VcardDirectory``):
    the search form's fields, the result's columns, and the search."""

    search_fields: list[tuple[str, str]] = [(f.label, f.var) for f in FIELDS]
    reported: list[tuple[str, str]] = [(f.label, f.var) for f in REPORTED]

    def __init__(self, store: VcardStore) -> None:
        self.store = store

    async def search(
        self, domain: str, submitted: Sequence[tuple[str, str]], limit: int | None
    ) -> list[SearchItem]:
        found = criteria(submitted)
        if not found or limit == 0:
            return []  # 6.4: an empty form finds nobody (a lone "*" lists everyone)
        rows = await self.store.search(domain, found, limit)
        return [
            SearchItem(row[0], tuple((f.var, row[i + 1] or "") for i, f in enumerate(REPORTED)))
            for row in rows
        ]
