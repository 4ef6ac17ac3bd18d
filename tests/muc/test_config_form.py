"""The muc#roomconfig form (XEP-0045 §10.2) as pure functions: what the owner gets, what a
submitted form changes, and every value refused with its stanza error."""

from __future__ import annotations

import pytest

from suricate.modules.mod_muc.config import ROOMCONFIG, RoomConfig, apply_form, config_form
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element


def _submit(**fields: str | list[str]) -> Element:
    form = Element("x", ns.DATA_FORMS, {"type": "submit"})
    form.add("field", attrs={"var": "FORM_TYPE"}).add("value", text=ROOMCONFIG)
    for var, value in fields.items():
        f = form.add("field", attrs={"var": var.replace("__", "#")})
        for v in value if isinstance(value, list) else [value]:
            f.add("value", text=v)
    return form


def test_form_round_trip() -> None:
    cfg = RoomConfig(title="T", members_only=True, anonymous=False, max_users=50)
    form = config_form(cfg, max_users=200)
    values = {f.attrs["var"]: [v.text for v in f.find_all("value", ns.DATA_FORMS)]
              for f in form.find_all("field", ns.DATA_FORMS)}
    assert values["muc#roomconfig_roomname"] == ["T"]
    assert values["muc#roomconfig_membersonly"] == ["1"]
    assert values["muc#roomconfig_whois"] == ["anyone"]
    assert values["muc#roomconfig_maxusers"] == ["50"]
    # Submitting the form as it came changes nothing.
    back = Element("x", ns.DATA_FORMS, {"type": "submit"}, form.find_all("field"))
    assert apply_form(cfg, back, 200, None, None) == cfg


def test_submitted_values_apply() -> None:
    new = apply_form(RoomConfig(), _submit(**{
        "muc__roomconfig_persistentroom": "true",
        "muc__roomconfig_passwordprotectedroom": "1",
        "muc__roomconfig_roomsecret": "s",
        "muc__roomconfig_allowpm": "none",
        "muc__roomconfig_getmemberlist": ["moderator", "participant"],
    }), 200, None, None)
    assert new.persistent and new.password_protected and new.password == "s"
    assert not new.allow_private_messages and new.allowpm == "none"
    assert new.maygetmemberlist == ["moderator", "participant"]


@pytest.mark.parametrize(("fields", "condition"), [
    ({"muc__roomconfig_persistentroom": "yes"}, "bad-request"),
    ({"muc__roomconfig_maxusers": "201"}, "not-acceptable"),
    ({"muc__roomconfig_maxusers": "many"}, "bad-request"),
    ({"muc__roomconfig_allowpm": "visitors"}, "not-acceptable"),
    ({"muc__roomconfig_whois": "nobody"}, "not-acceptable"),
    ({"muc__roomconfig_passwordprotectedroom": "1"}, "not-acceptable"),
    ({"muc__roomconfig_roomname": "x" * 11}, "not-acceptable"),
    ({"muc__roomconfig_getmemberlist": ["everyone"]}, "not-acceptable"),
])
def test_refused_values(fields: dict[str, str], condition: str) -> None:
    with pytest.raises(StanzaError) as err:
        apply_form(RoomConfig(), _submit(**fields), 200, 10, None)
    assert err.value.condition == condition


@pytest.mark.parametrize("allowpm", ["anyone", "participants", "moderators", "none"])
def test_allowpm_takes_the_four_values(allowpm: str) -> None:
    new = apply_form(RoomConfig(), _submit(muc__roomconfig_allowpm=allowpm), 200, None, None)
    assert new.allowpm == allowpm
    assert new.allow_private_messages is (allowpm != "none")
    # A stored room (or default_room) without allowpm reads it from the boolean.
    assert RoomConfig.from_dict({"allow_private_messages": False}).allowpm == "none"
