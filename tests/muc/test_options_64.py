"""MongooseIM 6.4 mod_muc options that were refused before: load_permanent_rooms_at_startup,
deep hibernation (hibernated_room_check_interval, hibernated_room_timeout),
min_message_interval, min_presence_interval, room_shaper, user_message_shaper,
user_presence_shaper and online_backend; real slixmpp clients over TLS, and the config
errors with their TOML path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from slixmpp import JID as SJID

from suricate.config.loader import ConfigError, parse_config
from suricate.jid import JID
from suricate.modules.mod_muc.limits import RATE_EXCEEDED
from tests.e2e.harness import disconnect, eventually, running_server
from tests.muc.conftest import (
    SERVICE,
    codes,
    create_instant,
    create_room,
    drain,
    error_message,
    muc_toml,
    next_groupchat,
    presence_from,
    user,
)
from tests.muc.test_persistence import _metrics

ROOM = f"opts@{SERVICE}"


# -- load_permanent_rooms_at_startup ----------------------------------------------------------
async def test_permanent_rooms_loaded_at_startup(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml()) as server:
        alice = await user(server, "alice")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True,
                                                 "muc#roomconfig_roomname": "Loaded"})
        await disconnect(alice)
    # Without the option a restarted server reads a room on its first stanza only.
    async with running_server(tmp_path, modules=muc_toml()) as server:
        assert server.modules["mod_muc"].rooms == {}  # type: ignore[attr-defined]
    options = "load_permanent_rooms_at_startup = true\n"
    async with running_server(tmp_path, modules=muc_toml(options)) as server:
        muc = server.modules["mod_muc"]
        # In memory before anyone sent anything, with its stored configuration.
        room = muc.rooms[JID.parse(ROOM)]  # type: ignore[attr-defined]
        assert room.config.title == "Loaded" and room.is_empty()
        assert muc.counts() == (1, 0)  # type: ignore[attr-defined]
        bob = await user(server, "bob")
        items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=5)
        assert (ROOM, None, "Loaded") in items["disco_items"]["items"]
        pres, _, _, _ = await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob",
                                                                   timeout=5)
        assert "201" not in codes(pres)  # the stored room, not a new one
        assert muc.rooms[JID.parse(ROOM)] is room  # type: ignore[attr-defined]
        await disconnect(bob)


# -- deep hibernation -------------------------------------------------------------------------
async def test_deep_hibernation_stops_a_room_with_its_owner_alone(tmp_path: Path) -> None:
    options = ("hibernate_timeout = 100\nhibernated_room_check_interval = 50\n"
               "hibernated_room_timeout = 100\n")
    extra = "[instrumentation]\n[instrumentation.prometheus]\n"
    async with running_server(tmp_path, extra=extra, modules=muc_toml(options)) as server:
        muc = server.modules["mod_muc"]
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True})
        other = f"other@{SERVICE}"
        await create_room(bob, other, "Bob", {"muc#roomconfig_persistentroom": True})
        await alice.plugin["xep_0045"].join_muc_wait(SJID(other), "Alice", timeout=5)
        drain(alice, bob)
        # Idle for hibernate_timeout + hibernated_room_timeout with only its owner in it:
        # the owner is told (332, "Room hibernation") and the room leaves memory.
        gone = await presence_from(alice, f"{ROOM}/Alice", "unavailable", timeout=5)
        assert {"110", "332"} <= codes(gone)
        assert gone["muc"]["affiliation"] == "owner" and gone["muc"]["role"] == "none"
        await eventually(lambda: JID.parse(ROOM) not in muc.rooms)  # type: ignore[attr-defined]
        assert muc.deep_hibernations == 1  # type: ignore[attr-defined]
        assert _metrics(server)["mod_muc_deep_hibernations_count_total"] == 1
        # A room with someone besides its owner stays (MongooseIM's rule).
        assert JID.parse(other) in muc.rooms  # type: ignore[attr-defined]
        # Joining again reads it back: the owner is still the owner.
        pres, _, _, _ = await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice",
                                                                     timeout=5)
        assert pres["muc"]["affiliation"] == "owner" and "201" not in codes(pres)
        await disconnect(alice, bob)


# -- min_message_interval ---------------------------------------------------------------------
async def test_min_message_interval(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml("min_message_interval = 1\n")) \
            as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        drain(alice, bob)
        started = time.monotonic()
        for i in range(5):
            bob.make_message(mto=ROOM, mbody=f"flood {i}", mtype="groupchat").send()
        # The first goes, the second waits for its second, the three others are refused.
        for _ in range(3):
            err = await error_message(bob)
            assert err["error"]["condition"] == "resource-constraint"
            assert err["error"]["text"] == RATE_EXCEEDED
            assert str(err["from"]) == ROOM
        assert (await next_groupchat(alice))["body"] == "flood 0"
        second = await next_groupchat(alice)
        assert second["body"] == "flood 1" and time.monotonic() - started >= 0.9
        # Nothing else reached the room.
        with pytest.raises(asyncio.TimeoutError):
            await next_groupchat(alice, timeout=0.5)
        # Another occupant has its own interval.
        alice.make_message(mto=ROOM, mbody="mine", mtype="groupchat").send()
        assert (await next_groupchat(bob))["body"] in ("flood 0", "flood 1", "mine")
        await disconnect(alice, bob)


# -- min_presence_interval --------------------------------------------------------------------
async def test_min_presence_interval(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml("min_presence_interval = 1\n")) \
            as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        drain(alice, bob)
        for status in ("one", "two", "three"):
            bob.send_presence(pto=f"{ROOM}/Bob", pstatus=status)
        # The join was Bob's last presence: these wait for their second and only the newest
        # one is processed; no error.
        pres = await presence_from(alice, f"{ROOM}/Bob", timeout=3)
        assert pres["status"] == "three"
        with pytest.raises(asyncio.TimeoutError):
            await presence_from(alice, f"{ROOM}/Bob", timeout=0.5)
        # Leaving is never held.
        started = time.monotonic()
        bob.plugin["xep_0045"].leave_muc(SJID(ROOM), "Bob")
        await presence_from(alice, f"{ROOM}/Bob", "unavailable", timeout=3)
        assert time.monotonic() - started < 0.5
        await disconnect(alice, bob)


# -- shapers ----------------------------------------------------------------------------------
SHAPERS = "[shaper.muc_slow]\nmax_rate = 600\n"


async def test_user_message_shaper(tmp_path: Path) -> None:
    async with running_server(tmp_path, extra=SHAPERS,
                              modules=muc_toml('user_message_shaper = "muc_slow"\n')) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        drain(alice, bob)
        body = "x" * 400  # ~500 bytes a stanza: the second is over the 600 bytes/s burst
        started = time.monotonic()
        for i in range(3):
            bob.make_message(mto=ROOM, mbody=f"{i}{body}", mtype="groupchat").send()
        err = await error_message(bob)
        assert err["error"]["condition"] == "resource-constraint"
        assert (await next_groupchat(alice))["body"].startswith("0")
        assert (await next_groupchat(alice))["body"].startswith("1")
        assert time.monotonic() - started >= 0.5  # it waited for the shaper
        await disconnect(alice, bob)


async def test_room_shaper_keeps_order_and_delays(tmp_path: Path) -> None:
    async with running_server(tmp_path, extra=SHAPERS,
                              modules=muc_toml('room_shaper = "muc_slow"\n')) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        drain(alice, bob)
        body = "y" * 400
        started = time.monotonic()
        bob.make_message(mto=ROOM, mbody=f"b{body}", mtype="groupchat").send()
        alice.make_message(mto=ROOM, mbody=f"a{body}", mtype="groupchat").send()
        # Two senders, one room budget: the second message waits its turn, none is refused.
        got = [(await next_groupchat(bob))["body"][0] for _ in range(2)]
        assert sorted(got) == ["a", "b"]
        assert time.monotonic() - started >= 0.5
        assert bob.errors.empty()  # type: ignore[attr-defined]
        await disconnect(alice, bob)


async def test_user_presence_shaper(tmp_path: Path) -> None:
    async with running_server(tmp_path, extra="[shaper.muc_presence]\nmax_rate = 2000\n",
                              modules=muc_toml('user_presence_shaper = "muc_presence"\n')) \
            as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        drain(alice, bob)
        # The join took ~330 bytes of the 2000 bytes/s burst, "a" (~1300) passes, "b" is over.
        for status in ("a" * 1200, "b" * 1200, "c" * 1200):
            bob.send_presence(pto=f"{ROOM}/Bob", pstatus=status)
        seen = [(await presence_from(alice, f"{ROOM}/Bob", timeout=3))["status"][0]]
        seen.append((await presence_from(alice, f"{ROOM}/Bob", timeout=3))["status"][0])
        # The first over the budget waits and is replaced by the newest: "b" never shows.
        assert seen == ["a", "c"]
        await disconnect(alice, bob)


# -- off: zero cost ---------------------------------------------------------------------------
async def test_limits_off_by_default(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml()) as server:
        muc = server.modules["mod_muc"]
        assert muc.limits is None  # type: ignore[attr-defined]
        alice = await user(server, "alice")
        await create_instant(alice, ROOM, "Alice")
        # The room's message path tests one attribute.
        assert muc.rooms[JID.parse(ROOM)].limiter is None  # type: ignore[attr-defined]
        assert muc.deep_check_every is None  # type: ignore[attr-defined]
        await disconnect(alice)


# -- configuration ----------------------------------------------------------------------------
def _config(tmp_path: Path, options: str, extra: str = "") -> str:
    toml = ('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n' + extra
            + "[modules.mod_muc]\n" + options)
    with pytest.raises(ConfigError) as err:
        parse_config(toml, tmp_path)
    return str(err.value)


def test_config_accepts_the_64_options(tmp_path: Path) -> None:
    cfg = parse_config('[general]\nhosts = ["localhost"]\ndefault_server_domain = "localhost"\n[shaper.muc]\nmax_rate = 1000\n'
                       "[modules.mod_muc]\n"
                       'online_backend = "cets"\nload_permanent_rooms_at_startup = true\n'
                       'hibernated_room_check_interval = "infinity"\n'
                       "hibernated_room_timeout = 120000\nmin_message_interval = 1\n"
                       'min_presence_interval = 0\nroom_shaper = "muc"\n'
                       'user_message_shaper = "normal"\nuser_presence_shaper = "none"\n',
                       tmp_path)
    opts = cfg["modules"]["mod_muc"]
    assert opts["online_backend"] == "cets"
    assert opts["hibernated_room_check_interval"] is None
    assert opts["hibernated_room_timeout"] == 120000
    assert opts["room_shaper"] == "muc"


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    assert "modules.mod_muc.online_backend: expected one of mnesia, cets" in _config(
        tmp_path, 'online_backend = "redis"\n')
    assert "modules.mod_muc.min_message_interval" in _config(
        tmp_path, "min_message_interval = -1\n")
    assert "modules.mod_muc.min_presence_interval" in _config(
        tmp_path, 'min_presence_interval = "1s"\n')
    assert "modules.mod_muc.hibernated_room_timeout" in _config(
        tmp_path, 'hibernated_room_timeout = "never"\n')
    assert "modules.mod_muc.hibernated_room_check_interval" in _config(
        tmp_path, "hibernated_room_check_interval = -5\n")
    assert "modules.mod_muc.load_permanent_rooms_at_startup" in _config(
        tmp_path, 'load_permanent_rooms_at_startup = "yes"\n')
    message = _config(tmp_path, 'room_shaper = "nope"\n')
    assert "modules.mod_muc.room_shaper: shaper 'nope' is not defined in [shaper]" in message
    assert "modules.mod_muc.user_presence_shaper" in _config(
        tmp_path, 'user_presence_shaper = "nope"\n')
