"""mod_vcard's ``ldap`` backend (MongooseIM 6.4's ``mod_vcard_ldap``): vCards (XEP-0054) and
the user directory search (XEP-0055) read from an LDAP directory. Read-only: the directory is
the source of truth, nobody changes it through XMPP.

The options are the ``[modules.mod_vcard.ldap]`` section, 6.4's names and defaults:

- ``pool_tag``, ``base``, ``uids``, ``filter``, ``deref``: as for the ldap auth method. A
  user's entry is found under ``base`` by any of ``uids`` (attribute and format; ``%d`` in a
  format is the user's domain, as 6.4 substitutes it), ANDed with ``filter``;
- ``vcard_map``: vCard field <- ``ldap_pattern`` where ``%s`` is the value of ``ldap_field``,
  ``%u`` the username and ``%d`` the domain;
- ``search_fields``: the search form's fields, each a label and the attribute it searches
  (``%u``: the username through ``uids``, as a substring);
- ``search_reported``: the columns of a search result, each a label and a vCard field of
  ``vcard_map``;
- ``search_operator``: how the fields filled in combine (``and`` / ``or``);
- ``binary_search_fields``: reported fields whose value is binary: sent base64-encoded.

Every function here that talks to the directory runs in the pool's worker threads and may
raise ``AuthUnavailable`` (the directory cannot be reached or failed the request).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from suricate.auth.ldap import DEREF, LdapPool, check_result, escape_value, template_user
from suricate.config.schema import ldap_filter_problem, ldap_uids_option
from suricate.config.spec import (
    REQUIRED,
    Context,
    ListOf,
    OneOf,
    Option,
    Section,
    Str,
    at,
    join,
)
from suricate.xml import ns
from suricate.xml.element import Element

# -- configuration -------------------------------------------------------------------------

#: RFC 4512 §2.5: an attribute description is a name (keystring) or a numeric OID, with
#: options (``;binary``, ``;lang-en``).
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$")
#: A vCard field name as XEP-0054's DTD spells them (FN, NICKNAME, ORGUNIT...).
_VCARD_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _attribute_problem(value: Any) -> str | None:
    if _ATTRIBUTE.match(str(value)):
        return None
    return "not an LDAP attribute name (RFC 4512 §2.5)"


def _search_attribute_problem(value: Any) -> str | None:
    return None if value == "%u" else _attribute_problem(value)


def _vcard_field_problem(value: Any) -> str | None:
    return None if _VCARD_FIELD.match(str(value)) else "not a vCard field name (XEP-0054)"


def _pattern_post(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                  ctx: Context) -> None:
    # One ldap_field per entry: a second %s would have no value (6.4 leaves it as text).
    if str(out["ldap_pattern"]).count("%s") > 1:
        ctx.error(join(path, "ldap_pattern"), 'at most one "%s" (the value of ldap_field)')


VCARD_MAP_ENTRY = Section(
    {
        "vcard_field": Option(Str(), doc="The vCard field (FN, EMAIL, PHOTO...).",
                              validators=(_vcard_field_problem,)),
        "ldap_pattern": Option(Str(), doc="Its value: `%s` is the value of `ldap_field`, "
                               "`%u` the username, `%d` the domain."),
        "ldap_field": Option(Str(), doc="The attribute read.",
                             validators=(_attribute_problem,)),
    },
    post=_pattern_post,
)

SEARCH_FIELD_ENTRY = Section({
    "search_field": Option(Str(), doc="The label of the search form's field."),
    "ldap_field": Option(Str(), doc="The attribute it searches; `%u`: the username "
                         "(through `uids`, as a substring).",
                         validators=(_search_attribute_problem,)),
})

SEARCH_REPORTED_ENTRY = Section({
    "search_field": Option(Str(), doc="The label of the result's column."),
    "vcard_field": Option(Str(), doc="The vCard field of `vcard_map` it shows.",
                          validators=(_vcard_field_problem,)),
})


def _entry(*values: str, keys: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(keys, values, strict=True))


_MAP_KEYS = ("vcard_field", "ldap_pattern", "ldap_field")
#: 6.4's default ``vcard_map``. NICKNAME is the username and reads no attribute, which the
#: TOML form cannot say (``ldap_field`` is required there): "" stands for "none".
DEFAULT_VCARD_MAP = [_entry("NICKNAME", "%u", "", keys=_MAP_KEYS)] + [
    _entry(field, "%s", attribute, keys=_MAP_KEYS) for field, attribute in (
        ("FN", "displayName"), ("FAMILY", "sn"), ("GIVEN", "givenName"),
        ("MIDDLE", "initials"), ("ORGNAME", "o"), ("ORGUNIT", "ou"), ("CTRY", "c"),
        ("LOCALITY", "l"), ("STREET", "street"), ("REGION", "st"),
        ("PCODE", "postalCode"), ("TITLE", "title"), ("URL", "labeleduri"),
        ("DESC", "description"), ("TEL", "telephoneNumber"), ("EMAIL", "mail"),
        ("BDAY", "birthDay"), ("ROLE", "employeeType"), ("PHOTO", "jpegPhoto"))]

#: 6.4's default ``search_fields``.
DEFAULT_SEARCH_FIELDS = [
    {"search_field": label, "ldap_field": attribute} for label, attribute in (
        ("User", "%u"), ("Full Name", "displayName"), ("Given Name", "givenName"),
        ("Middle Name", "initials"), ("Family Name", "sn"), ("Nickname", "%u"),
        ("Birthday", "birthDay"), ("Country", "c"), ("City", "l"), ("Email", "mail"),
        ("Organization Name", "o"), ("Organization Unit", "ou"))]

#: 6.4's default ``search_reported``. FIRST, LAST and NICK are not in the default
#: ``vcard_map`` (6.4 names them so): those columns stay empty unless the map has them.
DEFAULT_SEARCH_REPORTED = [
    {"search_field": label, "vcard_field": field} for label, field in (
        ("Full Name", "FN"), ("Given Name", "FIRST"), ("Middle Name", "MIDDLE"),
        ("Family Name", "LAST"), ("Nickname", "NICK"), ("Birthday", "BDAY"),
        ("Country", "CTRY"), ("City", "LOCALITY"), ("Email", "EMAIL"),
        ("Organization Name", "ORGNAME"), ("Organization Unit", "ORGUNIT"))]


def _ldap_post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    seen: dict[str, int] = {}
    for i, entry in enumerate(out["vcard_map"]):
        field = str(entry["vcard_field"]).upper()
        if field in seen:
            # 6.4 then maps neither of them (it wants exactly one entry per field).
            ctx.error(join(at(join(path, "vcard_map"), i), "vcard_field"),
                      f"{entry['vcard_field']} is already mapped by vcard_map[{seen[field]}]")
        seen.setdefault(field, i)
    if "search_reported" in raw or "vcard_map" in raw:
        for i, entry in enumerate(out["search_reported"]):
            if str(entry["vcard_field"]).upper() not in seen:
                ctx.warn(join(at(join(path, "search_reported"), i), "vcard_field"),
                         f"{entry['vcard_field']} is not in vcard_map: the column stays empty")


LDAP_SECTION = Section(
    {
        "pool_tag": Option(Str(), "default",
                           "The `[outgoing_pools.ldap.TAG]` pool the searches use."),
        "base": Option(Str(), REQUIRED, "Base DN under which the users are searched."),
        "uids": ldap_uids_option(),
        "filter": Option(Str(nonempty=False), "",
                         "Extra RFC 4515 filter ANDed to the uid match, e.g. "
                         '"(objectClass=inetOrgPerson)".', validators=(ldap_filter_problem,)),
        "deref": Option(OneOf(["never", "always", "finding", "searching"]), "never",
                        "Alias dereferencing during searches (RFC 4511 §4.5.1.3)."),
        "vcard_map": Option(ListOf(VCARD_MAP_ENTRY), DEFAULT_VCARD_MAP,
                            "vCard fields and the attributes they are made of.",
                            default_doc="6.4's: NICKNAME %u, FN displayName, FAMILY sn, GIVEN "
                            "givenName, EMAIL mail, PHOTO jpegPhoto... (docs/vcard_ldap.md)"),
        "search_fields": Option(ListOf(SEARCH_FIELD_ENTRY), DEFAULT_SEARCH_FIELDS,
                                "The search form's fields and the attributes they search.",
                                default_doc="6.4's: User %u, Full Name displayName, ... "
                                "(docs/vcard_ldap.md)"),
        "search_reported": Option(ListOf(SEARCH_REPORTED_ENTRY), DEFAULT_SEARCH_REPORTED,
                                  "The columns of a search result and their vCard fields.",
                                  default_doc="6.4's: Full Name FN, ... (docs/vcard_ldap.md)"),
        "search_operator": Option(OneOf(["and", "or"]), "and",
                                  "How the search fields filled in combine."),
        "binary_search_fields": Option(ListOf(Str()), [],
                                       "Reported fields (vCard field or label) whose value "
                                       "is binary, sent base64-encoded."),
    },
    post=_ldap_post,
    doc="The ldap backend: vCards and the user directory read from LDAP (read-only). "
    "See [vcard_ldap.md](vcard_ldap.md).",
)


# -- the directory ---------------------------------------------------------------------------

#: XEP-0054's structure: fields in the vCard itself, and those grouped in N, ORG and ADR
#: (what 6.4 renders; other names in vcard_map serve search_reported only).
_TOP = ("FN", "NICKNAME", "TITLE", "BDAY", "URL", "DESC", "ROLE", "TEL", "EMAIL", "PHOTO")
_GROUPS = {"N": ("FAMILY", "GIVEN", "MIDDLE"), "ORG": ("ORGNAME", "ORGUNIT"),
           "ADR": ("LOCALITY", "STREET", "CTRY", "REGION", "PCODE")}

Attributes = dict[str, list[bytes]]


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One vcard_map entry."""

    field: str      # upper case
    pattern: str
    attribute: str  # lower case, "" for none


def substitute(pattern: str, username: str, domain: str, value: str) -> str:
    """``%u``, ``%d`` and ``%s`` in one pass, so a value holding ``%u`` stays as it is."""
    table = {"%u": username, "%d": domain, "%s": value}
    return re.sub(r"%[uds]", lambda m: table[m.group(0)], pattern)


def wildcard(value: str) -> str:
    """A search value as an RFC 4515 assertion: ``*`` is a wildcard, the rest is escaped;
    several ``*`` in a row are one (an empty substring is not a filter)."""
    return re.sub(r"\*+", "*", "*".join(escape_value(part) for part in value.split("*")))


def image_type(data: bytes) -> str:
    """The MIME type of a photo by its magic number; 6.4 says image/jpeg for everything,
    which is what ``jpegPhoto`` (RFC 2798 §2.6) holds."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/jpeg"


def _first(attributes: Attributes, name: str) -> bytes | None:
    values = attributes.get(name)
    return values[0] if values else None


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def raw_search(conn: Any, base: str, filter_: str, deref: str, attributes: list[str],
               size_limit: int = 0) -> list[tuple[str, Attributes]]:
    """In a worker thread: the entries found, each with its attributes by lower-case name
    and their values as the directory sent them (bytes: a photo is binary). More entries
    than ``size_limit`` is not a failure (RFC 4511 §4.5.2: sizeLimitExceeded comes with the
    entries up to the limit)."""
    ok = conn.search(base, filter_, search_scope="SUBTREE", dereference_aliases=deref,
                     attributes=attributes, size_limit=size_limit)
    if not ok and (conn.result or {}).get("result") == 4:  # sizeLimitExceeded
        ok = True
    check_result(conn, ok)
    found = []
    for entry in conn.response or []:
        if entry.get("type") != "searchResEntry":
            continue  # referrals are not followed
        raw = entry.get("raw_attributes") or {}
        found.append((str(entry["dn"]),
                      {str(k).lower(): [bytes(v) for v in values] for k, values in raw.items()}))
    return found


@dataclass(frozen=True, slots=True)
class SearchItem:
    """One user found by a search: the username and the reported fields (vCard field ->
    value), in ``search_reported`` order."""

    username: str
    fields: tuple[tuple[str, str], ...]


class VcardDirectory:
    """The searches of the ldap backend over one pool (see the module docstring)."""

    def __init__(self, pool: LdapPool, opts: Mapping[str, Any]) -> None:
        self.pool = pool
        self.base = str(opts["base"])
        self.deref = DEREF[str(opts["deref"])]
        self.filter = str(opts["filter"])
        self.uids: list[tuple[str, str]] = [(str(u["attr"]), str(u["format"]))
                                            for u in opts["uids"]]
        self.mapping = {str(e["vcard_field"]).upper(): FieldMap(
            str(e["vcard_field"]).upper(), str(e["ldap_pattern"]), str(e["ldap_field"]).lower())
            for e in opts["vcard_map"]}
        self.search_fields: list[tuple[str, str]] = [
            (str(e["search_field"]), str(e["ldap_field"])) for e in opts["search_fields"]]
        self.reported: list[tuple[str, str]] = [
            (str(e["search_field"]), str(e["vcard_field"])) for e in opts["search_reported"]]
        self.operator = "&" if opts["search_operator"] == "and" else "|"
        binary = {str(b).lower() for b in opts["binary_search_fields"]}
        # 6.4 compares the list with the reported vCard fields; its docs speak of the search
        # fields' labels: either names a column here.
        self.binary = {field.upper() for label, field in self.reported
                       if field.lower() in binary or label.lower() in binary}

    # -- filters ---------------------------------------------------------------------------
    def _uids(self, domain: str) -> list[tuple[str, str]]:
        return [(attr, fmt.replace("%d", domain)) for attr, fmt in self.uids]

    def _match(self, domain: str, value: str) -> str:
        """Any uid attribute holding ``value`` (already an assertion) in its format."""
        alternatives = "".join(f"({attr}={fmt.replace('%u', value)})"
                               for attr, fmt in self._uids(domain))
        return alternatives if len(self.uids) == 1 else f"(|{alternatives})"

    def user_filter(self, username: str, domain: str) -> str:
        """The user's entry: ``(&(|(uid=alice)(mail=alice@example.org))FILTER)``."""
        match = self._match(domain, escape_value(username))
        return f"(&{match}{self.filter})" if self.filter else match

    def search_filter(self, domain: str, criteria: Sequence[tuple[str, str]]) -> str | None:
        """Every user (a uid of the right form) matching the criteria, (attribute or
        ``%u``, value) pairs, combined with ``search_operator``; None without a value. A
        value with ``*`` is a substring match, one without is an equality match (6.4), but
        the username is always a substring (6.4 searches ``*%u*``)."""
        parts = []
        for attribute, value in criteria:
            if not value:
                continue
            if attribute == "%u":
                parts.append(self._match(domain, wildcard(f"*{value}*")))
            else:
                parts.append(f"({attribute}={wildcard(value)})")
        if not parts:
            return None
        criterion = parts[0] if len(parts) == 1 else f"({self.operator}{''.join(parts)})"
        users = self._match(domain, "*")
        return f"(&{users}{self.filter}{criterion})"

    # -- reading entries -------------------------------------------------------------------
    def value(self, attributes: Attributes, field: str, username: str,
              domain: str) -> str | None:
        """The vCard ``field`` of an entry through ``vcard_map``; None when the map has no
        such field or the entry lacks its attribute."""
        mapping = self.mapping.get(field.upper())
        if mapping is None:
            return None
        data = b""
        if mapping.attribute:
            found = _first(attributes, mapping.attribute)
            if found is None:
                return None
            data = found
        return substitute(mapping.pattern, username, domain, _text(data)) or None

    def vcard_of(self, attributes: Attributes, username: str, domain: str) -> Element:
        """The vCard (XEP-0054) of an entry, laid out as 6.4 does: TEL as a work voice
        number, EMAIL as the preferred internet address, PHOTO as BINVAL."""
        vcard = Element("vCard", ns.VCARD)
        for field in self.mapping:
            if field not in _TOP:
                continue
            if field == "PHOTO":
                attribute = self.mapping[field].attribute
                data = _first(attributes, attribute) if attribute else None
                if data:
                    photo = vcard.add("PHOTO")
                    photo.add("TYPE", text=image_type(data))
                    photo.add("BINVAL", text=base64.b64encode(data).decode())
                continue
            text = self.value(attributes, field, username, domain)
            if text is None:
                continue
            if field == "TEL":
                tel = vcard.add("TEL")
                tel.add("VOICE")
                tel.add("WORK")
                tel.add("NUMBER", text=text)
            elif field == "EMAIL":
                email = vcard.add("EMAIL")
                email.add("INTERNET")
                email.add("PREF")
                email.add("USERID", text=text)
            else:
                vcard.add(field, text=text)
        for group, fields in _GROUPS.items():
            values = [(f, self.value(attributes, f, username, domain))
                      for f in self.mapping if f in fields]
            present = [(f, v) for f, v in values if v is not None]
            if present:
                element = vcard.add(group)
                for f, v in present:
                    element.add(f, text=v)
        return vcard

    def username_of(self, attributes: Attributes, domain: str) -> str | None:
        """The username of an entry: the first uid attribute it has, read through its
        format (6.4 looks no further than the first attribute with a value)."""
        for attr, fmt in self._uids(domain):
            found = _first(attributes, attr.lower())
            if found:
                return template_user(_text(found), fmt)
        return None

    def _vcard_attributes(self) -> list[str]:
        wanted = [m.attribute for m in self.mapping.values() if m.attribute]
        wanted += [attr for attr, _ in self.uids]
        return list(dict.fromkeys(a.lower() for a in wanted))

    def _reported_attributes(self) -> list[str]:
        wanted = [m.attribute for _, field in self.reported
                  if (m := self.mapping.get(field.upper())) is not None and m.attribute]
        wanted += [attr for attr, _ in self.uids]
        return list(dict.fromkeys(a.lower() for a in wanted))

    # -- what the module asks ----------------------------------------------------------------
    async def find(self, username: str, domain: str) -> Attributes | None:
        """The user's entry (the first one found, as 6.4), None without one."""
        filter_ = self.user_filter(username, domain)
        attributes = self._vcard_attributes()
        entries = await self.pool.run(lambda conn: raw_search(
            conn, self.base, filter_, self.deref, attributes, size_limit=1))
        return entries[0][1] if entries else None

    async def vcard(self, username: str, domain: str) -> Element | None:
        entry = await self.find(username, domain)
        return None if entry is None else self.vcard_of(entry, username, domain)

    async def search(self, domain: str, criteria: Sequence[tuple[str, str]],
                     limit: int | None) -> list[SearchItem]:
        """The users matching ``criteria``, at most ``limit`` entries of the directory
        (None: no limit); entries without a username are left out."""
        filter_ = self.search_filter(domain, criteria)
        if filter_ is None or limit == 0:
            return []
        attributes = self._reported_attributes()
        entries = await self.pool.run(lambda conn: raw_search(
            conn, self.base, filter_, self.deref, attributes, size_limit=limit or 0))
        items = []
        for _, attrs in entries[:limit] if limit else entries:
            username = self.username_of(attrs, domain)
            if not username:
                continue
            fields = []
            for _, field in self.reported:
                if field.upper() in self.binary:
                    mapping = self.mapping.get(field.upper())
                    data = _first(attrs, mapping.attribute) if mapping and mapping.attribute \
                        else None
                    fields.append((field, base64.b64encode(data).decode() if data else ""))
                else:
                    fields.append((field, self.value(attrs, field, username, domain) or ""))
            items.append(SearchItem(username, tuple(fields)))
        return items
