"""The XEP-0313 query parser, without a server: form fields, RSM, and what is refused."""

from __future__ import annotations

import pytest

from suricate.modules.mod_mam.query import parse_query, parse_stamp, stamp_of
from suricate.protocol.errors import StanzaError
from suricate.xml.parser import parse_fragment

FORM = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:mam:2</value></field>{}</x>")
RSM = "<set xmlns='http://jabber.org/protocol/rsm'>{}</set>"


def query(inner: str, full_text: bool = True) -> object:
    (el,) = parse_fragment(f"<query xmlns='urn:xmpp:mam:2' queryid='f1'>{inner}</query>")
    return parse_query(el, full_text_search=full_text)


def test_fields_and_rsm() -> None:
    q = query(FORM.format(
        "<field var='with'><value>Bob@Example.com/Phone</value></field>"
        "<field var='start'><value>2026-01-02T03:04:05.000006Z</value></field>"
        "<field var='ids'><value>11</value><value>12</value></field>"
        "<field var='{https://erlang-solutions.com/}full-text-search'><value>hi</value>"
        "</field>") + RSM.format("<max>10</max><before/>") + "<flip-page/>")
    assert str(q.with_jid) == "bob@example.com/Phone"  # type: ignore[attr-defined]
    assert q.ids == [11, 12] and q.full_text == "hi"  # type: ignore[attr-defined]
    assert q.max == 10 and q.last_page and q.flip and q.query_id == "f1"  # type: ignore
    assert stamp_of(q.start << 8) == "2026-01-02T03:04:05.000006Z"  # type: ignore
    assert parse_stamp("2026-01-02T04:04:05+01:00") == parse_stamp("2026-01-02T03:04:05Z")


@pytest.mark.parametrize(("inner", "condition"), [
    (FORM.format("<field var='colour'><value>red</value></field>"), "feature-not-implemented"),
    (FORM.replace("urn:xmpp:mam:2", "urn:xmpp:mam:1"), "bad-request"),
    (FORM.format("<field var='end'><value>soon</value></field>"), "bad-request"),
    (FORM.format("<field var='with'><value>a@b@c</value></field>"), "bad-request"),
    (FORM.format("<field var='after-id'><value>x1</value></field>"), "item-not-found"),
    (RSM.format("<max>-1</max>"), "bad-request"),
    (RSM.format("<max>ten</max>"), "bad-request"),
    (RSM.format("<after>1</after><before>2</before>"), "bad-request"),
    (RSM.format("<index>3</index><after>1</after>"), "bad-request"),
    (RSM.format("<after/>"), "bad-request"),
])
def test_refused(inner: str, condition: str) -> None:
    with pytest.raises(StanzaError) as err:
        query(inner)
    assert err.value.condition == condition


def test_full_text_field_only_when_enabled() -> None:
    field = "<field var='{https://erlang-solutions.com/}full-text-search'><value>x</value></field>"
    with pytest.raises(StanzaError):
        query(FORM.format(field), full_text=False)
