"""The room's multi-session rules on their own (no sockets): a ``Room`` driven with stanzas,
with a stand-in for the module and the router that records what the room sends."""

from __future__ import annotations

from typing import Any

from suricate.core.hooks import Hooks
from suricate.jid import JID
from suricate.modules.mod_muc import ModMuc
from suricate.modules.mod_muc.config import RoomConfig
from suricate.modules.mod_muc.room import MUC, Room
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element, SharedElement

ROOM = JID.parse("room@conference.localhost")
PHONE = JID.parse("alice@localhost/phone")
LAPTOP = JID.parse("alice@localhost/laptop")
BOB = JID.parse("bob@localhost/r")
CAROL = JID.parse("carol@localhost/r")


class Router:
    def __init__(self) -> None:
        self.sent: list[tuple[JID, JID, Element]] = []
        self.errors: list[tuple[Element, str]] = []

    def route(self, frm: JID, to: JID, stanza: Element) -> None:
        self.sent.append((frm, to, stanza))

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        self.errors.append((stanza, error.condition))

    def to(self, jid: JID, name: str | None = None) -> list[Element]:
        """What ``jid`` got (of element ``name``), emptied."""
        got = [s for _, t, s in self.sent if t == jid and (name is None or s.name == name)]
        self.sent = [e for e in self.sent if e[2] not in got]
        return got


class Server:
    def __init__(self) -> None:
        self.router = Router()
        self.hooks = Hooks()  # none added: the room asks whether any runs

    def spawn(self, coro: Any) -> None:
        coro.close()


class Module:
    """What a room asks of ModMuc; the account and room counting is ModMuc's own code."""

    occupant_joined = ModMuc.occupant_joined
    occupant_left = ModMuc.occupant_left
    may_join_another = ModMuc.may_join_another
    fan_out = ModMuc.fan_out

    def __init__(self, **opts: Any) -> None:
        self.server = Server()
        self.opts = {"history_size": 10, "max_users_admin_threshold": 0,
                     "max_user_conferences": 0, **opts}
        self.conferences = None
        self.limits = None  # min_message_interval and the shapers off
        self.http_auth = None  # room passwords are the rooms' own
        self.user_rooms: dict[JID, int] = {}
        self.joined: dict[JID, set[Room]] = {}
        self.emptied: list[Room] = []

    def is_service_admin(self, jid: JID, service: str) -> bool:
        return False

    def room_emptied(self, room: Room) -> None:
        self.emptied.append(room)


def room(**config: Any) -> tuple[Room, Router, Module]:
    module = Module()
    r = Room(module, ROOM, RoomConfig(**config),  # type: ignore[arg-type]
             affiliations={BOB.bare: ("owner", "")})
    return r, module.server.router, module


def presence(frm: JID, nick: str, ptype: str | None = None, show: str | None = None,
             joining: bool = True) -> tuple[JID, JID, Element]:
    pres = Element("presence", ns.CLIENT, {"from": str(frm), "to": f"{ROOM}/{nick}"})
    if ptype is not None:
        pres.attrs["type"] = ptype
    if show is not None:
        pres.add("show", text=show)
    if joining and ptype is None:
        pres.add("x", MUC)
    return frm, ROOM.with_resource(nick), pres


def status_codes(pres: Element) -> set[str]:
    x = pres.find("x", "http://jabber.org/protocol/muc#user")
    assert x is not None
    return {s.attrs["code"] for s in x.find_all("status", "http://jabber.org/protocol/muc#user")}


def test_sessions_are_one_occupant() -> None:
    r, router, module = room()
    r.route(*presence(BOB, "Bob"))
    r.route(*presence(PHONE, "Alice"))
    router.sent.clear()
    r.route(*presence(LAPTOP, "Alice"))
    assert list(r.occupants) == ["Bob", "Alice"] and len(r.by_jid) == 3
    assert module.user_rooms[PHONE.bare] == 1  # one room, two sessions
    assert router.to(BOB) == []  # same presence: nothing new for bob
    own = router.to(PHONE, "presence")
    assert len(own) == 1 and "110" in status_codes(own[0])
    laptop = router.to(LAPTOP, "presence")
    # §7.2.3: bob's presence first, its own (110, with its own JID) last.
    assert [p.attrs["from"] for p in laptop] == [f"{ROOM}/Bob", f"{ROOM}/Alice"]
    item = laptop[-1].find("x", "http://jabber.org/protocol/muc#user").find(  # type: ignore[union-attr]
        "item", "http://jabber.org/protocol/muc#user")
    assert item is not None and item.attrs["jid"] == str(LAPTOP)
    assert router.to(LAPTOP, "message")  # the subject ends the join (§7.2.16)


def test_groupchat_fan_out_reaches_every_session_serialized_once() -> None:
    r, router, _ = room()
    for jid, nick in ((BOB, "Bob"), (PHONE, "Alice"), (LAPTOP, "Alice")):
        r.route(*presence(jid, nick))
    router.sent.clear()
    msg = Element("message", ns.CLIENT, {"type": "groupchat", "from": str(BOB),
                                         "to": str(ROOM)})
    msg.add("body", text="hi")
    r.route(BOB, ROOM, msg)
    copies = [(to, s) for _, to, s in router.sent]
    assert sorted(str(to) for to, _ in copies) == sorted(map(str, (BOB, PHONE, LAPTOP)))
    # One message for all: the copies share their children (and their serialization).
    assert all(isinstance(s, SharedElement) for _, s in copies)
    assert len({id(s.children) for _, s in copies}) == 1


def test_iq_to_the_nick_goes_to_the_most_recent_session() -> None:
    r, router, _ = room()
    for jid, nick in ((BOB, "Bob"), (PHONE, "Alice"), (LAPTOP, "Alice")):
        r.route(*presence(jid, nick))

    def ask() -> JID:
        router.sent.clear()
        iq = Element("iq", ns.CLIENT, {"type": "get", "id": "v1", "from": str(BOB),
                                       "to": f"{ROOM}/Alice"})
        iq.add("query", "jabber:iq:version")
        r.route(BOB, ROOM.with_resource("Alice"), iq)
        [(_, to, _)] = router.sent
        return to

    assert ask() == LAPTOP
    r.route(*presence(PHONE, "Alice", show="away", joining=False))  # a presence update
    assert ask() == PHONE


def test_sessions_leave_one_by_one() -> None:
    r, router, module = room()
    for jid, nick in ((BOB, "Bob"), (PHONE, "Alice"), (LAPTOP, "Alice")):
        r.route(*presence(jid, nick))
    router.sent.clear()
    r.route(*presence(LAPTOP, "Alice", "unavailable"))
    [gone] = router.to(LAPTOP)
    assert gone.attrs["type"] == "unavailable" and "110" in status_codes(gone)
    assert router.to(BOB) == [] and router.to(PHONE) == []
    assert LAPTOP not in r.by_jid and module.user_rooms[PHONE.bare] == 1
    # A presence error from the last session (its server is gone): everyone sees 333.
    r.route(*presence(PHONE, "Alice", "error"))
    [left] = router.to(BOB)
    assert left.attrs["type"] == "unavailable" and "333" in status_codes(left)
    assert "Alice" not in r.occupants and PHONE.bare not in module.user_rooms


def test_limits_count_occupants_and_the_nick_stays_the_account_s() -> None:
    r, router, _ = room(max_users=2)
    r.route(*presence(BOB, "Bob"))
    r.route(*presence(PHONE, "Alice"))
    r.route(*presence(LAPTOP, "Alice"))  # not a third occupant: the room is not full
    assert LAPTOP in r.by_jid and not router.errors
    r.route(*presence(CAROL, "Carol"))
    assert [c for _, c in router.errors] == ["service-unavailable"]  # §7.2.10
    r.route(*presence(CAROL, "Alice"))
    assert [c for _, c in router.errors][-1] == "conflict"  # §7.2.9: alice's nick


def test_one_session_per_nick_when_the_room_says_so() -> None:
    r, router, _ = room(allow_multiple_sessions=False)
    r.route(*presence(PHONE, "Alice"))
    r.route(*presence(LAPTOP, "Alice"))
    assert [c for _, c in router.errors] == ["conflict"] and LAPTOP not in r.by_jid


def test_a_registered_nick_stays_its_owner_s() -> None:
    r, router, _ = room()
    r.nicks[CAROL.bare] = "Alice"  # §7.10: carol registered it
    r.route(*presence(PHONE, "Alice"))
    assert [c for _, c in router.errors] == ["conflict"]


def test_destroy_and_takeover_reach_every_session() -> None:
    for end in ("destroy", "taken_over"):
        r, router, module = room()
        module.room_destroyed = lambda room: None  # type: ignore[attr-defined]
        for jid, nick in ((BOB, "Bob"), (PHONE, "Alice"), (LAPTOP, "Alice")):
            r.route(*presence(jid, nick))
        router.sent.clear()
        if end == "destroy":
            r.destroy(None, "bye")
        else:
            r.taken_over()
        for jid in (PHONE, LAPTOP):
            [pres] = router.to(jid)
            assert pres.attrs["type"] == "unavailable"
        assert not r.by_jid and not module.user_rooms and not module.joined


def test_the_account_counts_one_room_under_any_nick() -> None:
    """max_user_conferences counts rooms: two sessions of one account in one room, under
    one nick or two, are one room."""
    r, router, module = room()
    module.opts["max_user_conferences"] = 1
    r.route(*presence(PHONE, "Alice"))
    r.route(*presence(LAPTOP, "Al"))  # another nick, another occupant, the same account
    assert not router.errors and list(r.occupants) == ["Alice", "Al"]
    assert module.user_rooms == {PHONE.bare: 1}
    r.route(*presence(PHONE, "Alice", "unavailable"))
    assert module.user_rooms == {PHONE.bare: 1}
    r.route(*presence(LAPTOP, "Al", "unavailable"))
    assert module.user_rooms == {} and module.joined == {}
