"""The pure parts of subscription options (XEP-0060 §6.3) and avatar conversion (XEP-0398):
what a submitted form becomes, what is refused, which metadata <info/> is converted."""

from __future__ import annotations

import base64
import hashlib

import pytest

from suricate.modules.mod_pubsub import avatars as A
from suricate.modules.mod_pubsub import subscription as S
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment


def submit(**fields: list[str]) -> Element:
    form = Element("x", ns.DATA_FORMS, {"type": "submit"})
    form.add("field", attrs={"var": "FORM_TYPE"}).add("value", text=S.SUBSCRIBE_OPTIONS)
    for var, values in fields.items():
        field = form.add("field", attrs={"var": "pubsub#" + var.replace("_values", "-values")})
        for value in values:
            field.add("value", text=value)
    return form


def test_options_parsed_and_round_tripped() -> None:
    options = S.parse_options(submit(deliver=["0"], include_body=["true"], digest=["0"],
                                     show_values=["dnd", "online"]))
    assert options == {"deliver": False, "include_body": True, "show-values": ["dnd", "online"]}
    form = S.options_form({**S.DEFAULTS, **options}, "submit")
    assert S.parse_options(form) == options | {"deliver": False}
    assert not S.wants(options, "online")  # deliver = false
    assert S.wants({"show-values": ["dnd"]}, "dnd") and not S.wants({"show-values": []}, "xa")
    assert S.parse_options(None) == {}


@pytest.mark.parametrize(("fields", "text"), [
    ({"digest": ["1"]}, "digests are not supported"),
    ({"subscription_depth": ["all"]}, "collection nodes"),
    ({"deliver": ["maybe"]}, "must be a boolean"),
    ({"show_values": ["busy"]}, "unknown presence show"),
    ({"expire": ["presence"]}, "not a subscription option"),
])
def test_options_refused(fields: dict[str, list[str]], text: str) -> None:
    with pytest.raises(StanzaError) as err:
        S.parse_options(submit(**fields))
    assert err.value.condition == "bad-request" and text in (err.value.text or "")
    assert err.value.app_condition is not None
    assert err.value.app_condition.name == "invalid-options"


def test_metadata_info_without_url_is_the_one_converted() -> None:
    metadata = parse_fragment(
        f"<metadata xmlns='{A.METADATA}'><info id='web' url='https://x/a.png' bytes='1'/>"
        "<info id='abc' type='image/webp' bytes='3'/></metadata>")[0]
    assert A.chosen_info(metadata) == ("abc", "image/webp")
    assert A.chosen_info(Element("metadata", A.METADATA)) is None  # avatar disabled
    image = b"\x89PNG fake"
    item_id, data, meta = A.avatar_items("image/png", image)
    assert item_id == hashlib.sha1(image).hexdigest()
    assert A.data_bytes(data) == image
    assert data.text == base64.b64encode(image).decode()
    assert A.chosen_info(meta) == (item_id, "image/png")
    assert A.data_bytes(Element("data", A.DATA, {}, ["not base64!"])) is None
