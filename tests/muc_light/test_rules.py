"""The affiliation rules (§5.4) and the config_schema, as pure functions."""

from __future__ import annotations

import pytest

from suricate.modules.mod_muc_light import rules
from suricate.modules.mod_muc_light.config import ConfigSchema, ConfigValueError
from suricate.protocol.errors import StanzaError

ROOM = {"crone1": "owner", "hag77": "member", "hag88": "member"}


def test_the_protocols_example() -> None:
    # §5.4: add hag66, make hag77 owner (crone1 is demoted with it), remove hag88.
    after, changed = rules.apply(ROOM, [("hag66", "member"), ("hag77", "owner"),
                                        ("hag88", "none")], equal_occupants=False)
    assert after == {"crone1": "member", "hag66": "member", "hag77": "owner"}
    assert changed == {"crone1": "member", "hag66": "member", "hag77": "owner",
                       "hag88": "none"}


def test_owner_leaving_hands_the_room_on() -> None:
    after, changed = rules.apply(ROOM, [("crone1", "none")], equal_occupants=False)
    assert after == {"hag77": "owner", "hag88": "member"}
    assert changed == {"crone1": "none", "hag77": "owner"}
    # and names a successor when it says so
    after, _ = rules.apply(ROOM, [("crone1", "none"), ("hag88", "owner")], False)
    assert after == {"hag77": "member", "hag88": "owner"}


@pytest.mark.parametrize("changes", [
    [("hag77", "member")],                      # not a change
    [("nobody", "none")],                       # not a member
    [("hag66", "admin")],                       # not a MUC Light affiliation
    [("hag66", "member"), ("hag66", "none")],   # twice
    [("hag77", "owner"), ("hag88", "owner")],   # two owners
])
def test_bad_requests(changes: list[tuple[str, str]]) -> None:
    with pytest.raises(StanzaError) as err:
        rules.apply(ROOM, changes, equal_occupants=False)
    assert err.value.condition == "bad-request"


def test_equal_occupants_have_no_owner() -> None:
    equal = {"a": "member", "b": "member"}
    assert rules.apply(equal, [("a", "none")], True) == ({"b": "member"}, {"a": "none"})
    with pytest.raises(StanzaError):
        rules.apply(equal, [("b", "owner")], True)


def test_members_may_leave_and_invite_only() -> None:
    rules.member_may("hag77", [("hag77", "none")], ROOM, all_can_invite=False)
    rules.member_may("hag77", [("new", "member")], ROOM, all_can_invite=True)
    for changes, invite in (([("new", "member")], False), ([("hag88", "none")], True),
                            ([("crone1", "member")], True), ([("new", "owner")], True)):
        with pytest.raises(StanzaError) as err:
            rules.member_may("hag77", changes, ROOM, all_can_invite=invite)
        assert err.value.condition == "not-allowed"


def test_config_schema_types() -> None:
    schema = ConfigSchema([{"field": "roomname", "string_value": "Untitled"},
                           {"field": "display-lines", "integer_value": 30,
                            "internal_key": "display_lines"},
                           {"field": "ratio", "float_value": 0.5},
                           {"field": "all_can_invite", "boolean_value": False}])
    assert schema.defaults() == {"roomname": "Untitled", "display_lines": 30, "ratio": 0.5,
                                 "all_can_invite": False}
    parsed = schema.parse([("display-lines", "40"), ("ratio", "1.5"),
                           ("all_can_invite", "true")])
    assert parsed == {"display_lines": 40, "ratio": 1.5, "all_can_invite": True}
    assert dict(schema.render({**schema.defaults(), **parsed}))["display-lines"] == "40"
    for bad in ([("display-lines", "many")], [("ratio", "nan")], [("colour", "red")],
                [("all_can_invite", "yes")], [("roomname", "a"), ("roomname", "b")]):
        with pytest.raises(ConfigValueError):
            schema.parse(bad)
    assert schema.name_of({"roomname": "Cave"}, "r1") == "Cave"


def test_an_owner_stepping_down_hands_the_room_to_a_member() -> None:
    # §5.4 rule 5: the successor is a member the request leaves alone, not the owner who
    # stepped down (nor a newcomer while old members remain), as MongooseIM picks it.
    after, changed = rules.apply(ROOM, [("crone1", "member")], equal_occupants=False)
    assert after == {"crone1": "member", "hag77": "owner", "hag88": "member"}
    assert changed == {"crone1": "member", "hag77": "owner"}
    after, changed = rules.apply(ROOM, [("crone1", "none"), ("aaa", "member")], False)
    assert after == {"aaa": "member", "hag77": "owner", "hag88": "member"}
    assert changed == {"crone1": "none", "aaa": "member", "hag77": "owner"}
    # A newcomer when no old member is left; the owner alone stays owner.
    after, changed = rules.apply({"crone1": "owner"}, [("crone1", "member"),
                                                       ("new", "member")], False)
    assert after == {"crone1": "member", "new": "owner"}
    with pytest.raises(StanzaError) as err:
        rules.apply({"crone1": "owner"}, [("crone1", "member")], False)
    assert err.value.condition == "bad-request"


@pytest.mark.parametrize(("item", "key", "wanted"), [
    ('field = "all_can_invite"\nstring_value = "false"', "all_can_invite", "boolean_value"),
    ('field = "open"\ninternal_key = "all_can_configure"\ninteger_value = 0',
     "all_can_configure", "boolean_value"),
    ('field = "roomname"\ninteger_value = 1', "roomname", "string_value"),
])
def test_reserved_internal_keys_have_their_type(item: str, key: str, wanted: str) -> None:
    # The module reads these keys as booleans / the room's name (MongooseIM 6.4 refuses
    # other types): a string "false" would otherwise let every member invite.
    from suricate.config import ConfigError
    from tests.unit.test_config import parse

    with pytest.raises(ConfigError) as info:
        parse(f"[modules.mod_muc_light]\n[[modules.mod_muc_light.config_schema]]\n{item}\n")
    assert [str(p) for p in info.value.problems] == [
        f"modules.mod_muc_light.config_schema[0]: the internal key '{key}' needs a {wanted}"]
