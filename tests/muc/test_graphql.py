"""The GraphQL `muc` category (MongooseIM 6.4's operations) over real HTTP, with real slixmpp
clients in the rooms it acts on, and its generated CLI commands (``suricate muc ...``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from slixmpp import JID as SJID

from suricate.config import parse_config
from suricate.core.server import Server
from suricate.modules import MODULES
from tests.e2e.harness import disconnect, free_port
from tests.muc.conftest import SERVICE, drain, muc_toml, next_groupchat, presence_from, user
from tests.ops.harness import admin, gql, ops_toml

ROOM = f"ops@{SERVICE}"
MODULES_TOML = muc_toml() + """
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.muc]
"""


async def _ops(tmp_path: Path) -> tuple[Server, Path]:
    from suricate.admin import HTTP_HANDLERS
    c2s, tls, http = free_port(), free_port(), free_port()
    config = tmp_path / "suricate.toml"
    config.write_text(ops_toml(tmp_path, c2s, tls, http, modules=MODULES_TOML))
    server = Server(parse_config(config.read_text(), tmp_path), tmp_path, MODULES,
                    http_handlers=HTTP_HANDLERS)
    await server.start()
    server.c2s_port = c2s  # type: ignore[attr-defined]
    server.tls_port = tls  # type: ignore[attr-defined]
    server.http_port = http  # type: ignore[attr-defined]
    return server, config


async def test_muc_category_drives_rooms(tmp_path: Path) -> None:
    server, _ = await _ops(tmp_path)
    try:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        data = await admin(server, 'mutation { muc { createInstantRoom(mucDomain: '
                           f'"{SERVICE}", name: "ops", owner: "alice@localhost", '
                           'nick: "Alice") { jid title private usersNumber } } }')
        assert data["muc"]["createInstantRoom"] == {"jid": ROOM, "title": "ops",
                                                    "private": False, "usersNumber": 0}
        again = await gql(server, 'mutation { muc { createInstantRoom(mucDomain: '
                          f'"{SERVICE}", name: "ops", owner: "alice@localhost", '
                          'nick: "A") { jid } } }')
        assert again[1]["errors"][0]["extensions"]["code"] == "room_exists"
        # 6.4: no room owned by an account that does not exist
        ghost = await gql(server, 'mutation { muc { createInstantRoom(mucDomain: '
                          f'"{SERVICE}", name: "ghosts", owner: "ghost@localhost", '
                          'nick: "G") { jid } } }')
        assert ghost[1]["errors"][0]["extensions"]["code"] == "user_not_found", ghost
        assert "not found" in ghost[1]["errors"][0]["message"]
        # enterRoom sends the presence alice's client would send: she is the owner.
        await admin(server, f'mutation {{ muc {{ enterRoom(room: "{ROOM}", user: '
                            '"alice@localhost/r", nick: "Alice") } }')
        pres = await presence_from(alice, f"{ROOM}/Alice")
        assert pres["muc"]["affiliation"] == "owner"
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        users = (await admin(server, f'{{ muc {{ listRoomUsers(room: "{ROOM}") '
                                     '{ jid nick role } } }'))["muc"]["listRoomUsers"]
        assert users == [{"jid": "alice@localhost/r", "nick": "Alice", "role": "MODERATOR"},
                         {"jid": "bob@localhost/r", "nick": "Bob", "role": "PARTICIPANT"}]
        # sendMessageToRoom: archived, and getRoomMessages reads the archive.
        await admin(server, f'mutation {{ muc {{ sendMessageToRoom(room: "{ROOM}", '
                            'from: "bob@localhost/r", body: "hello ops") } }')
        live = await next_groupchat(alice)
        assert live["body"] == "hello ops"
        msgs = (await admin(server, f'{{ muc {{ getRoomMessages(room: "{ROOM}", pageSize: 5)'
                                    ' { stanzas { sender stanza_id stanza } limit } } }'))
        (stanza,) = msgs["muc"]["getRoomMessages"]["stanzas"]
        assert stanza["sender"] == f"{ROOM}/Bob"
        assert stanza["stanza_id"] == str(live["stanza_id"]["id"])
        assert "hello ops" in stanza["stanza"]
        for size in (0, -1):
            _, bad = await gql(server, f'{{ muc {{ getRoomMessages(room: "{ROOM}", '
                                       f'pageSize: {size}) {{ limit }} }} }}')
            assert "pageSize must be positive" in bad["errors"][0]["message"], bad
        old = await admin(server, f'{{ muc {{ getRoomMessages(room: "{ROOM}", before: '
                                  '"2001-01-01T00:00:00Z") { stanzas { stanza_id } } } }')
        assert old["muc"]["getRoomMessages"]["stanzas"] == []
        bad = await gql(server, f'{{ muc {{ getRoomMessages(room: "{ROOM}", before: "soon") '
                                '{ limit } } }')
        assert "XEP-0082" in bad[1]["errors"][0]["message"]
        # Configuration, affiliations, roles.
        conf = await admin(server, 'mutation($c: MUCRoomConfigInput!) { muc { '
                           f'changeRoomConfiguration(room: "{ROOM}", config: $c) '
                           '{ title membersOnly allowPrivateMessages maxUsers '
                           'allowMultipleSession } } }',
                           c={"title": "Ops room", "allowPrivateMessages": False,
                              "maxUsers": 30, "allowMultipleSession": False})
        assert conf["muc"]["changeRoomConfiguration"] == {
            "title": "Ops room", "membersOnly": False, "allowPrivateMessages": False,
            "maxUsers": 30, "allowMultipleSession": False}
        await admin(server, f'mutation {{ muc {{ setUserAffiliation(room: "{ROOM}", '
                            'user: "carol@localhost", affiliation: MEMBER) } }')
        affs = await admin(server, f'{{ muc {{ listRoomAffiliations(room: "{ROOM}", '
                                   'affiliation: MEMBER) { jid affiliation } } }')
        assert affs["muc"]["listRoomAffiliations"] == [
            {"jid": "carol@localhost", "affiliation": "MEMBER"}]
        drain(bob)
        await admin(server, f'mutation {{ muc {{ setUserRole(room: "{ROOM}", nick: "Bob", '
                            'role: VISITOR) } }')
        assert (await presence_from(bob, f"{ROOM}/Bob"))["muc"]["role"] == "visitor"
        listed = await admin(server, f'{{ muc {{ listRooms(mucDomain: "{SERVICE}", limit: 5)'
                                     ' { rooms { jid title usersNumber } count first } } }')
        assert listed["muc"]["listRooms"] == {
            "rooms": [{"jid": ROOM, "title": "Ops room", "usersNumber": 2}], "count": 1,
            "first": ROOM}
        # kickUser, then deleteRoom: the occupants leave, the archive goes.
        await admin(server, f'mutation {{ muc {{ kickUser(room: "{ROOM}", nick: "Bob", '
                            'reason: "bye") } }')
        kicked = await presence_from(bob, f"{ROOM}/Bob", "unavailable")
        assert "307" in {str(c) for c in kicked["muc"]["status_codes"]}
        await admin(server, f'mutation {{ muc {{ deleteRoom(room: "{ROOM}", reason: "x") }} }}')
        await presence_from(alice, f"{ROOM}/Alice", "unavailable")
        missing = await gql(server, f'{{ muc {{ getRoomConfig(room: "{ROOM}") {{ title }} }} }}')
        assert missing[1]["errors"][0]["extensions"]["code"] == "room_not_found"
        await disconnect(alice, bob)
    finally:
        await server.stop()


def _cli(config: Path, *args: str) -> Any:
    res = subprocess.run([sys.executable, "-m", "suricate", "muc", *args, "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, (args, res.stderr)
    return json.loads(res.stdout) if res.stdout.strip() else None


async def test_generated_cli_commands(tmp_path: Path) -> None:
    server, config = await _ops(tmp_path)
    try:
        alice = await user(server, "alice")

        async def cli(*args: str) -> Any:
            return await asyncio.to_thread(_cli, config, *args)

        made = await cli("createInstantRoom", "--mucDomain", SERVICE, "--name", "ops",
                         "--owner", "alice@localhost", "--nick", "Alice")
        assert made["jid"] == ROOM
        # An input object is given as JSON; its flag is --gql-config (--config is the file).
        conf = await cli("changeRoomConfiguration", "--room", ROOM, "--gql-config",
                         '{"persistent": true, "title": "From the CLI"}')
        assert conf["persistent"] is True and conf["title"] == "From the CLI"
        assert (await cli("getRoomConfig", "--room", ROOM))["title"] == "From the CLI"
        await cli("enterRoom", "--room", ROOM, "--user", "alice@localhost/r", "--nick", "Al")
        await presence_from(alice, f"{ROOM}/Al")
        rooms = await cli("listRooms", "--mucDomain", SERVICE)
        assert rooms["count"] == 1 and rooms["rooms"][0]["usersNumber"] == 1
        bad = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "suricate", "muc", "changeRoomConfiguration",
                             "--room", ROOM, "--gql-config", "not json", "--config",
                             str(config)], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "expected a JSON object" in bad.stderr
        await disconnect(alice)
    finally:
        await server.stop()
