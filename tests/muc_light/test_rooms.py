"""MUC Light (urn:xmpp:muclight:0) driven by real slixmpp clients over direct TLS: creation,
messages, configuration, affiliations, destruction, blocking, limits, disco#items pages,
offline members. Sections (§) are those of ESL's MUC Light protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.modules.mod_muc_light import ModMucLight
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element
from tests.e2e.harness import disconnect, running_server
from tests.muc_light.conftest import (
    NS,
    SERVICE,
    affs_xml,
    create_xml,
    iq,
    iq_error,
    light_toml,
    next_message,
    no_message,
    user,
    users_of,
)

ROOM = f"coven@{SERVICE}"
AFFS, CONF = f"{{{NS}#affiliations}}", f"{{{NS}#configuration}}"
SCHEMA = """
[[modules.mod_muc_light.config_schema]]
field = "roomname"
string_value = "Untitled"
[[modules.mod_muc_light.config_schema]]
field = "subject"
string_value = ""
[[modules.mod_muc_light.config_schema]]
field = "display-lines"
integer_value = 30
internal_key = "display_lines"
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=light_toml(SCHEMA)) as srv:
        yield srv


def x_of(msg: object, ns: str) -> object:
    found = msg.xml.find(f"{{{ns}}}x")  # type: ignore[attr-defined]
    assert found is not None, msg
    return found


async def test_discovery_create_and_conflict(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    items = await alice.plugin["xep_0030"].get_items(jid="localhost", timeout=5)
    assert SERVICE in {i[0] for i in items["disco_items"]["items"]}
    info = await iq(alice, SERVICE, "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    assert info is not None
    assert NS in {f.attrib["var"] for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}

    # §5.1: the creator and each new member learn their own affiliation and the version.
    assert await iq(alice, ROOM, "set", create_xml(
        occupants={"bob@localhost": "member"}, roomname="A Dark Cave")) is None
    for client, aff in ((alice, "owner"), (bob, "member")):
        msg = await next_message(client)
        assert msg["from"] == ROOM and msg["type"] == "groupchat"
        x = msg.xml.find(f"{AFFS}x")
        assert users_of(x, f"{NS}#affiliations") == {client.boundjid.bare: aff}
        assert x.find(f"{AFFS}version") is not None and x.find(f"{AFFS}prev-version") is None
    # §5.1.2: the name is taken.
    assert await iq_error(bob, ROOM, "set", create_xml()) == "conflict"
    # §5.1.1: a name chosen by the service, learnt from the notification.
    await iq(alice, SERVICE, "set", create_xml(roomname="Random"))
    new_room = str((await next_message(alice))["from"])
    assert new_room.endswith("@" + SERVICE) and new_room != ROOM
    # disco#items of the service: the user's rooms with name and version (§3.3).
    items_el = await iq(alice, SERVICE, "get",
                        "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    assert items_el is not None
    listed = {i.attrib["jid"]: i.attrib for i in items_el}
    assert listed[ROOM]["name"] == "A Dark Cave" and listed[ROOM]["version"]
    assert listed[new_room]["name"] == "Random"
    # bad input: the creator in the occupant list, 'none', an unknown field
    for bad in (create_xml(occupants={"alice@localhost": "member"}),
                create_xml(occupants={"bob@localhost": "none"}),
                create_xml(colour="red"), "<query xmlns='urn:xmpp:muclight:0#create'>"
                "<occupants><item role='x'>bob@localhost</item></occupants></query>"):
        assert await iq_error(alice, f"other@{SERVICE}", "set", bad) == "bad-request"
    # Members are users: a room made a member of another (and that one of it) would relay
    # each other's notifications and messages forever.
    assert await iq_error(alice, f"other@{SERVICE}", "set", create_xml(
        occupants={ROOM: "member"})) == "bad-request"
    assert await iq_error(alice, ROOM, "set", affs_xml({new_room: "member"})) == "bad-request"
    await no_message(alice)
    await disconnect(alice, bob)


async def test_messages_reach_every_member_with_stanza_id(server: Server) -> None:
    alice = await user(server, "alice")
    bob, carol = await user(server, "bob"), await user(server, "carol")
    bob2 = await user(server, "bob", resource="second")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    for client in (alice, bob, bob2):
        await next_message(client)  # the creation notifications

    bob.send_message(mto=ROOM, mtype="groupchat", mbody="Harpier cries")
    stanza_ids = set()
    for client in (alice, bob, bob2):  # §4.1: every member, the sender too, each session
        msg = await next_message(client)
        assert msg["from"] == f"{ROOM}/bob@localhost" and msg["body"] == "Harpier cries"
        sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
        assert sid is not None and sid.attrib["by"] == ROOM
        stanza_ids.add(sid.attrib["id"])
    assert len(stanza_ids) == 1
    # §7.1: not a member, nothing to learn; §7.3: a chat message is a bad request.
    carol.send_message(mto=ROOM, mtype="groupchat", mbody="let me in")
    err = await next_message(carol)
    assert err["type"] == "error" and err["error"]["condition"] == "item-not-found"
    alice.send_message(mto=ROOM, mtype="chat", mbody="hello")
    err = await next_message(alice)
    assert err["type"] == "error" and err["error"]["condition"] == "bad-request"
    await no_message(bob)
    # §7.2: presence is ignored.
    carol.send_presence(pto=ROOM)
    await no_message(carol)
    await disconnect(alice, bob, bob2, carol)


async def test_configuration_and_info(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"},
                                            roomname="Cave"))
    await next_message(alice), await next_message(bob)
    conf = await iq(bob, ROOM, "get", f"<query xmlns='{NS}#configuration'/>")
    assert conf is not None
    fields = {c.tag.split("}")[1]: c.text or "" for c in conf}
    assert fields["roomname"] == "Cave" and fields["display-lines"] == "30"
    # §4.3: the same version is answered with an empty result.
    assert await iq(bob, ROOM, "get", f"<query xmlns='{NS}#configuration'>"
                    f"<version>{fields['version']}</version></query>") is None
    # §7.4: a member may change the subject only.
    assert await iq_error(bob, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                          "<roomname>Mine</roomname></query>") == "not-allowed"
    await iq(bob, ROOM, "set", f"<query xmlns='{NS}#configuration'><subject>To be</subject>"
             "</query>")
    for client in (alice, bob):  # §4.2: announced like any configuration change
        x = x_of(await next_message(client), f"{NS}#configuration")
        assert x.find(f"{CONF}subject").text == "To be"  # type: ignore[attr-defined]
        assert x.find(f"{CONF}prev-version").text == fields["version"]  # type: ignore[attr-defined]
    # The owner changes a custom field; its type is checked (config_schema).
    assert await iq_error(alice, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                          "<display-lines>many</display-lines></query>") == "bad-request"
    assert await iq_error(alice, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                          "<version>x</version></query>") == "bad-request"
    await iq(alice, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
             "<display-lines>40</display-lines></query>")
    x = x_of(await next_message(bob), f"{NS}#configuration")
    assert x.find(f"{CONF}display-lines").text == "40"  # type: ignore[attr-defined]
    info = await iq(bob, ROOM, "get", f"<query xmlns='{NS}#info'/>")
    assert info is not None
    conf_el = info.find(f"{{{NS}#info}}configuration")
    assert conf_el is not None
    got = {c.tag.split("}")[1]: c.text or "" for c in conf_el}
    assert got == {"roomname": "Cave", "subject": "To be", "display-lines": "40"}
    assert users_of(info.find(f"{{{NS}#info}}occupants"), f"{NS}#info") == {  # type: ignore[arg-type]
        "alice@localhost": "owner", "bob@localhost": "member"}
    # unknown room
    assert await iq_error(alice, f"nowhere@{SERVICE}", "get",
                          f"<query xmlns='{NS}#info'/>") == "item-not-found"
    await disconnect(alice, bob)


async def test_affiliation_changes(server: Server) -> None:
    alice, bob, carol, dave = [await user(server, n) for n in ("alice", "bob", "carol", "dave")]
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    await next_message(alice), await next_message(bob)
    # §5.4: a newcomer gets its own affiliation; members get every change and both versions.
    await iq(alice, ROOM, "set", affs_xml({"carol@localhost": "member"}))
    x = x_of(await next_message(carol), f"{NS}#affiliations")
    assert users_of(x, f"{NS}#affiliations") == {"carol@localhost": "member"}  # type: ignore[arg-type]
    assert x.find(f"{AFFS}prev-version") is None  # type: ignore[attr-defined]
    for client in (alice, bob):
        x = x_of(await next_message(client), f"{NS}#affiliations")
        assert x.find(f"{AFFS}prev-version") is not None  # type: ignore[attr-defined]
    # §5.4 rule 6: a new owner demotes the current one, in the same notification.
    await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "owner"}))
    x = x_of(await next_message(carol), f"{NS}#affiliations")
    assert users_of(x, f"{NS}#affiliations") == {  # type: ignore[arg-type]
        "bob@localhost": "owner", "alice@localhost": "member"}
    await next_message(alice), await next_message(bob)
    # §7.4: a member may not remove others nor name an owner; strangers learn nothing.
    assert await iq_error(alice, ROOM, "set", affs_xml({"carol@localhost": "none"})) \
        == "not-allowed"
    assert await iq_error(alice, ROOM, "set", affs_xml({"dave@localhost": "member"})) \
        == "not-allowed"
    assert await iq_error(dave, ROOM, "set", affs_xml({"dave@localhost": "member"})) \
        == "item-not-found"
    # §5.4 rules 8 and 10: each JID once, and only real changes.
    assert await iq_error(bob, ROOM, "set", "<query xmlns='urn:xmpp:muclight:0#affiliations'>"
                          "<user affiliation='member'>dave@localhost</user>"
                          "<user affiliation='none'>dave@localhost</user></query>") \
        == "bad-request"
    assert await iq_error(bob, ROOM, "set", affs_xml({"carol@localhost": "member"})) \
        == "bad-request"
    # §4.4: leaving; the one leaving hears only of itself.
    await iq(carol, ROOM, "set", affs_xml({"carol@localhost": "none"}))
    x = x_of(await next_message(carol), f"{NS}#affiliations")
    assert users_of(x, f"{NS}#affiliations") == {"carol@localhost": "none"}  # type: ignore[arg-type]
    assert x.find(f"{AFFS}version") is None  # type: ignore[attr-defined]
    await next_message(alice), await next_message(bob)
    # The owner leaving hands the room on (rule 5).
    await iq(bob, ROOM, "set", affs_xml({"bob@localhost": "none"}))
    x = x_of(await next_message(alice), f"{NS}#affiliations")
    assert users_of(x, f"{NS}#affiliations") == {  # type: ignore[arg-type]
        "bob@localhost": "none", "alice@localhost": "owner"}
    await next_message(bob)
    got = await iq(alice, ROOM, "get", f"<query xmlns='{NS}#affiliations'/>")
    assert got is not None
    assert users_of(got, f"{NS}#affiliations") == {"alice@localhost": "owner"}
    # §5.2: the room ends with its last member.
    await iq(alice, ROOM, "set", affs_xml({"alice@localhost": "none"}))
    await next_message(alice)
    assert await iq_error(alice, ROOM, "get", f"<query xmlns='{NS}#info'/>") == "item-not-found"
    await disconnect(alice, bob, carol, dave)


async def test_destroy(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    await next_message(alice), await next_message(bob)
    destroy = f"<query xmlns='{NS}#destroy'/>"
    assert await iq_error(bob, ROOM, "set", destroy) == "not-allowed"
    await iq(alice, ROOM, "set", destroy)
    for client in (alice, bob):
        msg = await next_message(client)
        assert msg.xml.find(f"{{{NS}#destroy}}x") is not None
        assert users_of(msg.xml.find(f"{AFFS}x"), f"{NS}#affiliations") == {
            client.boundjid.bare: "none"}
    assert await iq_error(alice, ROOM, "set", destroy) == "item-not-found"
    await disconnect(alice, bob)


async def test_blocking(server: Server) -> None:
    alice, bob, carol = [await user(server, n) for n in ("alice", "bob", "carol")]
    blocking = f"<query xmlns='{NS}#blocking'>"
    await iq(bob, SERVICE, "set", blocking + "<user action='deny'>alice@localhost</user>"
             f"<room action='deny'>other@{SERVICE}</room></query>")
    got = await iq(bob, SERVICE, "get", blocking + "</query>")
    assert got is not None
    assert sorted((c.tag.split("}")[1], c.attrib["action"], c.text) for c in got) == [
        ("room", "deny", f"other@{SERVICE}"), ("user", "deny", "alice@localhost")]
    # §4.5: a user who blocks the requester is skipped without an error.
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member",
                                                       "carol@localhost": "member"}))
    await next_message(alice), await next_message(carol)
    await no_message(bob)
    got = await iq(alice, ROOM, "get", f"<query xmlns='{NS}#affiliations'/>")
    assert "bob@localhost" not in users_of(got, f"{NS}#affiliations")  # type: ignore[arg-type]
    # ... and so is one blocking the room, whoever adds it.
    await iq(carol, f"other@{SERVICE}", "set", create_xml(occupants={"bob@localhost": "member"}))
    await next_message(carol)
    await no_message(bob)
    # allow lifts it
    await iq(bob, SERVICE, "set", blocking + "<user action='allow'>alice@localhost</user></query>")
    await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "member"}))
    assert (await next_message(bob))["from"] == ROOM
    assert await iq_error(bob, SERVICE, "set", blocking + "<user action='maybe'>x@localhost"
                          "</user></query>") == "bad-request"
    await disconnect(alice, bob, carol)


async def test_limits(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=light_toml(
            "rooms_per_user = 2\nmax_occupants = 3\nrooms_per_page = 2\n"
            "rooms_in_rosters = true\n")) as server:
        alice, bob, carol, dave = [await user(server, n)
                                   for n in ("alice", "bob", "carol", "dave")]
        # max_occupants: 6.4 answers bad-request when a room would be too big.
        assert await iq_error(alice, ROOM, "set", create_xml(occupants={
            "bob@localhost": "member", "carol@localhost": "member",
            "dave@localhost": "member"})) == "bad-request"
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member",
                                                           "carol@localhost": "member"}))
        assert await iq_error(alice, ROOM, "set", affs_xml({"dave@localhost": "member"})) \
            == "bad-request"
        await iq(alice, f"second@{SERVICE}", "set", create_xml())
        # rooms_per_user: the creator at its limit is refused (bad-request, as 6.4) ...
        assert await iq_error(alice, f"third@{SERVICE}", "set", create_xml()) == "bad-request"
        # ... and a newcomer at its limit is skipped.
        await iq(bob, f"b2@{SERVICE}", "set", create_xml())
        await iq(dave, f"d1@{SERVICE}", "set", create_xml(occupants={"bob@localhost": "member"}))
        got = await iq(dave, f"d1@{SERVICE}", "get", f"<query xmlns='{NS}#affiliations'/>")
        assert users_of(got, f"{NS}#affiliations") == {"dave@localhost": "owner"}  # type: ignore[arg-type]
        # disco#items in pages of rooms_per_page (XEP-0059)
        await iq(carol, f"c1@{SERVICE}", "set", create_xml())
        page = await iq(alice, SERVICE, "get",
                        "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        assert page is not None
        rsm = "{http://jabber.org/protocol/rsm}"
        assert [i.attrib["jid"] for i in page.findall(
            "{http://jabber.org/protocol/disco#items}item")] == [ROOM, f"second@{SERVICE}"]
        assert page.find(f"{rsm}set") is None  # one page holds them all
        page = await iq(carol, SERVICE, "get",
                        "<query xmlns='http://jabber.org/protocol/disco#items'>"
                        "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set></query>")
        assert page is not None
        assert [i.attrib["jid"] for i in page.findall(
            "{http://jabber.org/protocol/disco#items}item")] == [f"c1@{SERVICE}"]
        assert page.find(f"{rsm}set/{rsm}count").text == "2"  # type: ignore[union-attr]
        assert await iq_error(carol, SERVICE, "get",  # XEP-0059 §2.1: max is not negative
                              "<query xmlns='http://jabber.org/protocol/disco#items'><set "
                              "xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>"
                              "</query>") == "bad-request"
        last = page.find(f"{rsm}set/{rsm}last").text  # type: ignore[union-attr]
        page = await iq(carol, SERVICE, "get",
                        "<query xmlns='http://jabber.org/protocol/disco#items'>"
                        "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max>"
                        f"<after>{last}</after></set></query>")
        assert [i.attrib["jid"] for i in page.findall(  # type: ignore[union-attr]
            "{http://jabber.org/protocol/disco#items}item")] == [ROOM]
        # rooms_in_rosters (§6.1): the rooms are in the roster carol fetches.
        roster = await iq(carol, "carol@localhost", "get", "<query xmlns='jabber:iq:roster'/>")
        assert roster is not None
        rooms = {i.attrib["jid"]: i for i in roster.findall("{jabber:iq:roster}item")}
        assert set(rooms) == {ROOM, f"c1@{SERVICE}"}
        assert rooms[ROOM].attrib["subscription"] == "to"
        assert rooms[ROOM].findtext("{jabber:iq:roster}group") == NS
        assert rooms[ROOM].findtext("{jabber:iq:roster}version")
        await disconnect(alice, bob, carol, dave)


async def test_offline_member_gets_messages_from_offline_storage(tmp_path: Path) -> None:
    offline = "[modules.mod_offline]\nstore_groupchat_messages = true\n"
    async with running_server(tmp_path, modules=light_toml(extra_modules=offline)) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await disconnect(bob)
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
        await next_message(alice)
        alice.send_message(mto=ROOM, mtype="groupchat", mbody="while you were away")
        await next_message(alice)
        await asyncio.sleep(0.2)
        bob = await user(server, "bob")
        got = [await next_message(bob), await next_message(bob)]
        assert got[0].xml.find(f"{AFFS}x") is not None  # the creation notification
        assert got[1]["body"] == "while you were away"
        assert got[1]["from"] == f"{ROOM}/alice@localhost"
        await disconnect(alice, bob)


async def test_equal_occupants_and_per_room_overrides(tmp_path: Path) -> None:
    options = """equal_occupants = true
all_can_invite = true
blocking = false
[[modules.mod_muc_light.config_schema]]
field = "roomname"
string_value = "Untitled"
[[modules.mod_muc_light.config_schema]]
field = "all_can_configure"
boolean_value = false
"""
    async with running_server(tmp_path, modules=light_toml(options)) as server:
        alice, bob, carol = [await user(server, n) for n in ("alice", "bob", "carol")]
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
        x = x_of(await next_message(alice), f"{NS}#affiliations")
        assert users_of(x, f"{NS}#affiliations") == {"alice@localhost": "member"}  # type: ignore[arg-type]
        await next_message(bob)
        await iq(bob, ROOM, "set", affs_xml({"carol@localhost": "member"}))  # all_can_invite
        await next_message(carol)
        rename = f"<query xmlns='{NS}#configuration'><roomname>Ours</roomname></query>"
        assert await iq_error(bob, ROOM, "set", rename) == "not-allowed"
        # The room's own all_can_configure field overrides the module option.
        module = server.modules["mod_muc_light"]
        await module.change_config(None, SERVICE, "coven", {"all_can_configure": True})
        await iq(bob, ROOM, "set", rename)
        assert await iq_error(bob, ROOM, "set", f"<query xmlns='{NS}#destroy'/>") \
            == "not-allowed"
        # blocking = false: the feature answers bad-request, as in 6.4.
        assert await iq_error(bob, SERVICE, "get", f"<query xmlns='{NS}#blocking'/>") \
            == "bad-request"
        await disconnect(alice, bob, carol)


async def test_a_copy_coming_back_from_a_remote_member_room_is_refused(server: Server) -> None:
    # A room on another server can be a member (a remote JID) and have this room as one of
    # its members: each would relay the other's copies forever. What comes back with this
    # room's own stanza-id is refused (the remote room ignores the error).
    alice = await user(server, "alice")
    remote_room = "loop@muclight.remote.invalid"
    await iq(alice, ROOM, "set", create_xml(occupants={remote_room: "member"}))
    await next_message(alice)
    alice.send_message(mto=ROOM, mtype="groupchat", mbody="round and round")
    sent = (await next_message(alice)).xml.find("{urn:xmpp:sid:0}stanza-id")
    back = Element("message", ns.CLIENT, {"type": "groupchat", "id": "b1"})
    back.add("body", text="round and round")
    back.add("stanza-id", "urn:xmpp:sid:0", {"id": sent.attrib["id"], "by": ROOM})
    module = server.modules["mod_muc_light"]
    assert isinstance(module, ModMucLight)
    with pytest.raises(StanzaError) as refused:
        await module.send_message(remote_room, SERVICE, "coven", back)
    assert refused.value.condition == "not-acceptable"
    await no_message(alice)
    await disconnect(alice)
