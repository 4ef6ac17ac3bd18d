"""mod_vcard's rdbms user directory, the pure parts: what of a vCard is indexed, how a form's
values become criteria, and XEP-0059 paging of the results."""

from __future__ import annotations

import pytest

from suricate.modules.mod_vcard.search import (
    Criterion,
    criteria,
    index_row,
    like_pattern,
)
from suricate.protocol.errors import StanzaError
from suricate.protocol.rsm import rsm_page
from suricate.xml.element import Element
from suricate.xml.ns import RSM
from suricate.xml.parser import parse_fragment


def test_index_row_reads_the_fields_6_4_searches() -> None:
    row = index_row(
        "<vCard xmlns='vcard-temp'><FN> Peter Saint-Andre </FN><N><FAMILY>Saint-Andre"
        "</FAMILY><GIVEN>Peter</GIVEN><MIDDLE/></N><NICKNAME>stpeter</NICKNAME>"
        "<ADR><LOCALITY>Denver</LOCALITY><CTRY>USA</CTRY></ADR>"
        "<EMAIL><INTERNET/><USERID>stpeter@jabber.org</USERID></EMAIL>"
        "<ORG><ORGNAME>XSF</ORGNAME></ORG></vCard>"
    )
    assert row == {
        "fn": "Peter Saint-Andre",
        "given": "Peter",
        "middle": "",
        "family": "Saint-Andre",
        "nickname": "stpeter",
        "bday": "",
        "ctry": "USA",
        "locality": "Denver",
        "email": "stpeter@jabber.org",
        "orgname": "XSF",
        "orgunit": "",
    }
    # An address written as the EMAIL's text (older clients); a broken vCard has nothing.
    assert index_row("<vCard xmlns='vcard-temp'><EMAIL>a@b.c</EMAIL></vCard>")["email"] == "a@b.c"
    assert set(index_row("<vCard").values()) == {""}


def test_criteria_of_a_submitted_form() -> None:
    assert criteria([("fn", " Alice "), ("nick", ""), ("unknown", "x"), ("user", "Al*")]) == [
        Criterion("lfn", "alice", False),
        Criterion("username", "al%", True),
    ]
    assert like_pattern("100%_sure*") == "100!%!_sure%"
    assert like_pattern("a**b!") == "a%b!!"


def rsm(xml: str) -> Element:
    (element,) = parse_fragment(f"<set xmlns='{RSM}'>{xml}</set>")
    return element


KEYS = ["a@x", "b@x", "c@x", "d@x"]


@pytest.mark.parametrize(
    ("request_xml", "bounds", "first"),
    [
        ("<max>2</max>", (0, 2), "a@x"),
        ("<max>2</max><after>b@x</after>", (2, 4), "c@x"),
        ("<max>2</max><before/>", (2, 4), "c@x"),
        ("<max>2</max><before>c@x</before>", (0, 2), "a@x"),
        ("<max>1</max><index>3</index>", (3, 4), "d@x"),
        ("<max>0</max>", (0, 0), None),
    ],
)
def test_rsm_pages_the_results(
    request_xml: str, bounds: tuple[int, int], first: str | None
) -> None:
    start, end, answer = rsm_page(KEYS, rsm(request_xml))
    assert (start, end) == bounds
    assert answer.find_text("count", RSM) == "4"
    assert answer.find_text("first", RSM) == first


@pytest.mark.parametrize(
    ("request_xml", "condition"),
    [
        ("<after>z@x</after>", "item-not-found"),
        ("<max>-1</max>", "bad-request"),
        ("<index>x</index>", "bad-request"),
    ],
)
def test_rsm_errors(request_xml: str, condition: str) -> None:
    with pytest.raises(StanzaError) as err:
        rsm_page(KEYS, rsm(request_xml))
    assert err.value.condition == condition
