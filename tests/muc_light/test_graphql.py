"""The muc_light category of the GraphQL admin API over real HTTP (members connected with
slixmpp see what it does), and its generated CLI commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from suricate.jid import JID
from tests.e2e.harness import disconnect
from tests.muc_light.conftest import NS, SERVICE, light_toml, next_message, user, users_of
from tests.ops.harness import admin, gql, ops_server

ROOM = f"cave@{SERVICE}"
ROOM_FIELDS = "{ jid name subject participants { jid affiliation } options { key value } }"


def code(result: dict[str, Any]) -> str:
    return str(result["errors"][0]["extensions"]["code"])


async def test_admin_api(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=light_toml()) as server:
        for name in ("alice", "bob", "carol"):
            await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        bob = await user(server, "bob")
        data = await admin(server, 'mutation { muc_light { createRoom(mucDomain: "localhost", '
                           'name: "Cave", owner: "alice@localhost", subject: "Spells", '
                           f'id: "cave") {ROOM_FIELDS} }} }}')
        room = data["muc_light"]["createRoom"]
        assert room["jid"] == ROOM and room["name"] == "Cave" and room["subject"] == "Spells"
        assert room["participants"] == [{"jid": "alice@localhost", "affiliation": "OWNER"}]
        status, result = await gql(server, 'mutation { muc_light { createRoom(mucDomain: '
                                   '"elsewhere.org", name: "x", owner: "alice@localhost", '
                                   'subject: "") { jid } } }')
        assert code(result) == "muc_server_not_found"
        status, result = await gql(server, 'mutation { muc_light { createRoom(mucDomain: '
                                   f'"{SERVICE}", name: "x", owner: "alice@localhost", '
                                   'subject: "", id: "cave") { jid } } }')
        assert code(result) == "already_exists"

        # inviteUser acts for the sender: the newcomer is told like any other.
        data = await admin(server, f'mutation {{ muc_light {{ inviteUser(room: "{ROOM}", '
                           'sender: "alice@localhost", recipient: "bob@localhost") } }')
        assert data["muc_light"]["inviteUser"] == "User invited successfully"
        note = await next_message(bob)
        assert users_of(note.xml.find(f"{{{NS}#affiliations}}x"), f"{NS}#affiliations") == {
            "bob@localhost": "member"}
        data = await admin(server, f'{{ muc_light {{ listRoomUsers(room: "{ROOM}") '
                           '{ jid affiliation } listUserRooms(user: "bob@localhost") } }')
        assert data["muc_light"]["listRoomUsers"] == [
            {"jid": "alice@localhost", "affiliation": "OWNER"},
            {"jid": "bob@localhost", "affiliation": "MEMBER"}]
        assert data["muc_light"]["listUserRooms"] == [ROOM]

        data = await admin(server, f'mutation {{ muc_light {{ sendMessageToRoom(room: "{ROOM}", '
                           'from: "alice@localhost", body: "Double, double") } }')
        assert data["muc_light"]["sendMessageToRoom"] == "Message sent successfully"
        msg = await next_message(bob)
        assert msg["from"] == f"{ROOM}/alice@localhost" and msg["body"] == "Double, double"
        status, result = await gql(server, 'mutation { muc_light { sendMessageToRoom(room: '
                                   f'"{ROOM}", from: "carol@localhost", body: "x") }} }}')
        assert code(result) == "not_found"

        data = await admin(server, 'mutation { muc_light { changeRoomConfiguration(room: '
                           f'"{ROOM}", owner: "alice@localhost", name: "Cauldron", '
                           f'subject: "Brew") {ROOM_FIELDS} }} }}')
        assert data["muc_light"]["changeRoomConfiguration"]["name"] == "Cauldron"
        note = await next_message(bob)
        x = note.xml.find(f"{{{NS}#configuration}}x")
        assert x.find(f"{{{NS}#configuration}}roomname").text == "Cauldron"
        status, result = await gql(server, 'mutation { muc_light { changeRoomConfiguration('
                                   f'room: "{ROOM}", owner: "bob@localhost", name: "Mine", '
                                   'subject: "") { jid } } }')
        assert code(result) == "not_allowed"
        data = await admin(server, f'{{ muc_light {{ getRoomConfig(room: "{ROOM}") '
                           '{ name subject } } }')
        assert data["muc_light"]["getRoomConfig"] == {"name": "Cauldron", "subject": "Brew"}

        data = await admin(server, 'mutation { muc_light { setBlockingList(user: '
                           '"bob@localhost", items: [{entityType: USER, action: DENY, '
                           'entity: "carol@localhost"}]) } }')
        assert data["muc_light"]["setBlockingList"] == "User blocking list updated successfully"
        _, ghost = await gql(server, 'mutation { muc_light { setBlockingList(user: '
                             '"ghost@localhost", items: [{entityType: USER, action: DENY, '
                             'entity: "carol@localhost"}]) } }')
        assert ghost["errors"][0]["extensions"]["code"] == "user_not_found", ghost
        data = await admin(server, '{ muc_light { getBlockingList(user: "bob@localhost") '
                           '{ entityType action entity } } }')
        assert data["muc_light"]["getBlockingList"] == [
            {"entityType": "USER", "action": "DENY", "entity": "carol@localhost"}]

        # Without mod_mam's muc section, rooms have no archive.
        status, result = await gql(server, f'{{ muc_light {{ getRoomMessages(room: "{ROOM}") '
                                   '{ limit } } }')
        assert code(result) == "module_not_loaded"

        data = await admin(server, f'mutation {{ muc_light {{ kickUser(room: "{ROOM}", '
                           'user: "bob@localhost") } }')
        assert data["muc_light"]["kickUser"] == "User kicked successfully"
        note = await next_message(bob)
        assert users_of(note.xml.find(f"{{{NS}#affiliations}}x"), f"{NS}#affiliations") == {
            "bob@localhost": "none"}
        data = await admin(server, f'mutation {{ muc_light {{ deleteRoom(room: "{ROOM}") }} }}')
        assert data["muc_light"]["deleteRoom"] == "Room deleted successfully"
        status, result = await gql(server, f'{{ muc_light {{ getRoomConfig(room: "{ROOM}") '
                                   '{ name } } }')
        assert code(result) == "not_found"
        await disconnect(bob)

        # A dynamic domain gets its service when added, and loses it when removed.
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        await server.auth.register(JID.parse("zed@dyn.example"), "pw")
        made = await admin(server, 'mutation { muc_light { createRoom(mucDomain: "dyn.example",'
                           ' name: "Dyn", owner: "zed@dyn.example", subject: "", id: "d") '
                           '{ jid } } }')
        assert made["muc_light"]["createRoom"]["jid"] == "d@muclight.dyn.example"
        await admin(server, 'mutation { domain { removeDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        status, result = await gql(server, 'mutation { muc_light { createRoom(mucDomain: '
                                   '"dyn.example", name: "x", owner: "zed@dyn.example", '
                                   'subject: "") { jid } } }')
        assert code(result) == "muc_server_not_found"
        # ... and its rooms with it (6.4's remove_domain): not there when the name returns.
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        status, result = await gql(server, '{ muc_light { getRoomConfig(room: '
                                   '"d@muclight.dyn.example") { name } } }')
        assert code(result) == "not_found", result


def test_cli_commands_are_generated() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "suricate", *args], capture_output=True,
                              text=True, timeout=60)

    top = run("muc_light", "--help")
    assert top.returncode == 0
    for command in ("createRoom", "changeRoomConfiguration", "inviteUser", "deleteRoom",
                    "kickUser", "sendMessageToRoom", "getRoomMessages", "listUserRooms",
                    "listRoomUsers", "getRoomConfig", "getBlockingList", "setBlockingList"):
        assert command in top.stdout, command
    create = run("muc_light", "createRoom", "--help")
    assert "--mucDomain" in create.stdout and "--owner" in create.stdout
    missing = run("muc_light", "createRoom", "--name", "x")
    assert missing.returncode == 2 and "--mucDomain" in missing.stderr


async def test_user_api(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules=light_toml()) as server:
        for name in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        bob = await user(server, "bob")

        async def as_user(name: str, query: str) -> dict[str, Any]:
            status, result = await gql(server, query, auth=(f"{name}@localhost", f"{name}-pw"),
                                       path="/api/graphql/user")
            assert status == 200
            return result

        made = await as_user("alice", 'mutation { muc_light { createRoom(mucDomain: '
                             f'"{SERVICE}", name: "Den", subject: "") {{ jid participants '
                             '{ jid affiliation } } } }')
        room = made["data"]["muc_light"]["createRoom"]
        assert room["participants"] == [{"jid": "alice@localhost", "affiliation": "OWNER"}]
        jid = room["jid"]
        await as_user("alice", f'mutation {{ muc_light {{ inviteUser(room: "{jid}", '
                      'recipient: "bob@localhost") } }')
        await next_message(bob)
        listed = await as_user("bob", "{ muc_light { listRooms } }")
        assert listed["data"]["muc_light"]["listRooms"] == [jid]
        # bob is a member: he may not destroy the room nor remove alice, but may leave.
        denied = await as_user("bob", f'mutation {{ muc_light {{ deleteRoom(room: "{jid}") }} }}')
        assert code(denied) == "not_allowed"
        denied = await as_user("bob", f'mutation {{ muc_light {{ kickUser(room: "{jid}", '
                               'user: "alice@localhost") } }')
        assert code(denied) == "not_allowed"
        left = await as_user("bob", f'mutation {{ muc_light {{ kickUser(room: "{jid}") }} }}')
        assert left["data"]["muc_light"]["kickUser"] == "User kicked successfully"
        gone = await as_user("bob", f'{{ muc_light {{ getRoomConfig(room: "{jid}") {{ name }} }} }}')
        assert code(gone) == "not_found"
        await disconnect(bob)


async def test_category_needs_the_module(tmp_path: Path) -> None:
    async with ops_server(tmp_path, modules="[modules.mod_disco]") as server:
        status, result = await gql(server, '{ muc_light { listUserRooms(user: '
                                   '"ann@localhost") } }')
        assert status == 200 and code(result) == "module_not_loaded"
        assert result["errors"][0]["message"] == "mod_muc_light is not enabled"
