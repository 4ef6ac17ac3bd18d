"""mod_vcard's ldap backend without a directory: its configuration (6.4's names and defaults,
each refusal naming its TOML path), the filters it searches with, and the vCard it makes of
an entry. The searches themselves run against a real slapd in tests/e2e/test_vcard_ldap.py."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from suricate.auth.ldap import template_user
from suricate.config.loader import parse_config_with_warnings
from suricate.modules.mod_vcard.ldap import (
    DEFAULT_SEARCH_FIELDS,
    DEFAULT_SEARCH_REPORTED,
    DEFAULT_VCARD_MAP,
    VcardDirectory,
    image_type,
    substitute,
    wildcard,
)
from suricate.xml.parser import parse_fragment
from tests.unit.test_config import GENERAL, parse, refused

POOL = "[outgoing_pools.ldap.default]\n"
SECTION = POOL + '[modules.mod_vcard]\nbackend = "ldap"\n[modules.mod_vcard.ldap]\n' \
    'base = "dc=example,dc=com"\n'


def ldap_opts(extra: str = "") -> dict[str, Any]:
    return dict(parse(SECTION + extra)["modules"]["mod_vcard"]["ldap"])


def warnings_of(text: str) -> list[str]:
    _, found = parse_config_with_warnings(GENERAL + text, Path("/nonexistent"))
    return [str(w) for w in found]


def test_defaults_are_64s() -> None:
    opts = ldap_opts()
    assert opts == {
        "pool_tag": "default", "base": "dc=example,dc=com", "deref": "never", "filter": "",
        "uids": [{"attr": "uid", "format": "%u"}], "vcard_map": DEFAULT_VCARD_MAP,
        "search_fields": DEFAULT_SEARCH_FIELDS, "search_reported": DEFAULT_SEARCH_REPORTED,
        "search_operator": "and", "binary_search_fields": [],
    }
    fields = {e["vcard_field"]: (e["ldap_pattern"], e["ldap_field"]) for e in DEFAULT_VCARD_MAP}
    assert fields["NICKNAME"] == ("%u", "") and fields["FN"] == ("%s", "displayName")
    assert fields["EMAIL"] == ("%s", "mail") and fields["PHOTO"] == ("%s", "jpegPhoto")
    assert len(DEFAULT_VCARD_MAP) == 20 and len(DEFAULT_SEARCH_FIELDS) == 12
    assert DEFAULT_SEARCH_FIELDS[0] == {"search_field": "User", "ldap_field": "%u"}
    assert DEFAULT_SEARCH_REPORTED[0] == {"search_field": "Full Name", "vcard_field": "FN"}
    module = parse(SECTION)["modules"]["mod_vcard"]
    assert (module["host"], module["search"], module["matches"]) == ("vjud.@HOST@", True, 30)


def test_the_rdbms_backend_has_no_ldap_section() -> None:
    assert "ldap" not in parse("[modules.mod_vcard]\n")["modules"]["mod_vcard"]
    # matches, host and search serve the rdbms backend's directory too (XEP-0055).
    assert warnings_of('[modules.mod_vcard]\nmatches = 5\nldap.base = "dc=x"\n') == [
        'modules.mod_vcard.ldap: ignored: backend is not "ldap"']
    assert warnings_of(SECTION) == []


M = "modules.mod_vcard.ldap"


@pytest.mark.parametrize(("text", "expected"), [
    (POOL + '[modules.mod_vcard]\nbackend = "ldap"\n', f"{M}.base: missing required option"),
    (SECTION.replace(POOL, ""),
     f"{M}.pool_tag: pool 'default' is not defined in [outgoing_pools.ldap]"),
    (SECTION + 'pool_tag = "other"\n',
     f"{M}.pool_tag: pool 'other' is not defined in [outgoing_pools.ldap]"),
    (SECTION + 'filter = "objectClass=person"\n',
     f"{M}.filter: not an LDAP filter: unbalanced parentheses (RFC 4515)"),
    (SECTION + 'deref = "sometimes"\n',
     f"{M}.deref: expected one of never, always, finding, searching"),
    (SECTION + 'search_operator = "xor"\n', f"{M}.search_operator: expected one of and, or"),
    (SECTION + 'uids = [{attr = "mail", format = "%u@%u"}]\n',
     f'{M}.uids[0].format: must contain "%u" exactly once'),
    (SECTION + 'vcard_map = [{vcard_field = "FN", ldap_pattern = "%s"}]\n',
     f"{M}.vcard_map[0].ldap_field: missing required option"),
    (SECTION + 'vcard_map = [{vcard_field = "FN", ldap_pattern = "%s", ldap_field = "cn", '
     'ldap_attr = "x"}]\n', f"{M}.vcard_map[0].ldap_attr: unknown option"),
    (SECTION + 'vcard_map = [{vcard_field = "FN", ldap_pattern = "%s", ldap_field = "c n"}]\n',
     f"{M}.vcard_map[0].ldap_field: not an LDAP attribute name (RFC 4512 §2.5)"),
    (SECTION + 'vcard_map = [{vcard_field = "F N", ldap_pattern = "%s", ldap_field = "cn"}]\n',
     f"{M}.vcard_map[0].vcard_field: not a vCard field name (XEP-0054)"),
    (SECTION + 'vcard_map = [{vcard_field = "FN", ldap_pattern = "%s %s", ldap_field = "cn"}]\n',
     f'{M}.vcard_map[0].ldap_pattern: at most one "%s" (the value of ldap_field)'),
    (SECTION + 'vcard_map = [{vcard_field = "FN", ldap_pattern = "%s", ldap_field = "cn"},\n'
     '  {vcard_field = "fn", ldap_pattern = "%s", ldap_field = "displayName"}]\n',
     f"{M}.vcard_map[1].vcard_field: fn is already mapped by vcard_map[0]"),
    (SECTION + 'vcard_map = {FN = "cn"}\n', f"{M}.vcard_map: expected an array of tables, got a table"),
    (SECTION + 'search_fields = [{search_field = "User", ldap_field = "%s"}]\n',
     f"{M}.search_fields[0].ldap_field: not an LDAP attribute name (RFC 4512 §2.5)"),
    (SECTION + 'search_reported = [{search_field = "Name"}]\n',
     f"{M}.search_reported[0].vcard_field: missing required option"),
    (SECTION + 'binary_search_fields = [""]\n',
     f"{M}.binary_search_fields[0]: expected a non-empty string"),
    (SECTION + 'ldap_base = "dc=x"\n', f"{M}.ldap_base: unknown option"),
    (POOL + '[modules.mod_vcard]\nbackend = "mnesia"\n',
     "modules.mod_vcard.backend: backend 'mnesia' is not available in this version of "
     "Suricate"),
])
def test_bad_values_are_refused_with_their_path(text: str, expected: str) -> None:
    refused(text, expected)


def test_a_reported_field_outside_the_map_is_a_warning() -> None:
    text = SECTION + 'search_reported = [{search_field = "Name", vcard_field = "NAME"}]\n'
    assert warnings_of(text) == [
        f"{M}.search_reported[0].vcard_field: NAME is not in vcard_map: the column stays empty"]


def directory(extra: str = "") -> VcardDirectory:
    return VcardDirectory(None, ldap_opts(extra))  # type: ignore[arg-type]


def test_filters() -> None:
    plain = directory()
    assert plain.user_filter("alice", "example.org") == "(uid=alice)"
    # RFC 4515 §3: a username cannot widen the filter.
    assert plain.user_filter("a*)(uid=*", "x") == r"(uid=a\2a\29\28uid=\2a)"
    two = directory('filter = "(objectClass=inetOrgPerson)"\n'
                    'uids = [{attr = "uid"}, {attr = "mail", format = "%u@%d"}]\n')
    assert two.user_filter("alice", "example.org") == (
        "(&(|(uid=alice)(mail=alice@example.org))(objectClass=inetOrgPerson))")
    # Search: every user (%u -> *), the filter, then the criteria; "and" by default.
    assert two.search_filter("example.org", [("displayName", "Al*"), ("l", ""),
                                             ("%u", "li")]) == (
        "(&(|(uid=*)(mail=*@example.org))(objectClass=inetOrgPerson)"
        "(&(displayName=Al*)(|(uid=*li*)(mail=*li*@example.org))))")
    assert two.search_filter("x", [("l", ""), ("sn", "")]) is None
    either = directory('search_operator = "or"\n')
    assert either.search_filter("x", [("l", "Oxford"), ("sn", "Li(ddell)")]) == (
        r"(&(uid=*)(|(l=Oxford)(sn=Li\28ddell\29)))")
    assert either.search_filter("x", [("l", "Ox")]) == "(&(uid=*)(l=Ox))"
    assert wildcard("**a**b\\*") == r"*a*b\5c*"


def test_substitute_and_template_user() -> None:
    assert substitute("%s <%u@%d>", "alice", "example.org", "Alice %u") == (
        "Alice %u <alice@example.org>")
    assert template_user("Alice@Example.org", "%u@example.org") == "Alice"
    assert template_user("alice@other.org", "%u@example.org") is None
    assert template_user("@example.org", "%u@example.org") is None


def test_image_type() -> None:
    assert image_type(b"\x89PNG\r\n\x1a\n...") == "image/png"
    assert image_type(b"GIF89a...") == "image/gif"
    assert image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"


def test_an_entry_as_a_vcard() -> None:
    entry = {"displayname": [b"Alice Liddell"], "givenname": [b"Alice"], "sn": [b"Liddell"],
             "mail": [b"alice@example.com", b"a@example.com"], "telephonenumber": [b"+44 1"],
             "o": [b"Wonderland"], "l": [b"Oxford"], "jpegphoto": [b"\xff\xd8\xff\x00"],
             "uid": [b"alice"]}
    vcard = directory().vcard_of(entry, "alice", "example.org")
    (expected,) = parse_fragment(
        "<vCard xmlns='vcard-temp'><NICKNAME>alice</NICKNAME><FN>Alice Liddell</FN>"
        "<TEL><VOICE/><WORK/><NUMBER>+44 1</NUMBER></TEL>"
        "<EMAIL><INTERNET/><PREF/><USERID>alice@example.com</USERID></EMAIL>"
        "<PHOTO><TYPE>image/jpeg</TYPE><BINVAL>"
        + base64.b64encode(b"\xff\xd8\xff\x00").decode() + "</BINVAL></PHOTO>"
        "<N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N><ORG><ORGNAME>Wonderland</ORGNAME>"
        "</ORG><ADR><LOCALITY>Oxford</LOCALITY></ADR></vCard>")
    assert vcard == expected
    # Nothing mapped: an empty vCard, no empty N/ORG/ADR.
    (nick_only,) = parse_fragment("<vCard xmlns='vcard-temp'><NICKNAME>bob</NICKNAME></vCard>")
    assert directory().vcard_of({}, "bob", "x") == nick_only
    assert directory().username_of(entry, "x") == "alice"
