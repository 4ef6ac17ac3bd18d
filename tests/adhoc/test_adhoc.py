"""XEP-0050 ad-hoc commands and XEP-0133 administration with slixmpp's xep_0050 and xep_0133
plugins over TLS against a running Suricate: the command lists, ping, sessions (next, prev,
complete, cancel, bad sessionid), the administration commands for the admins of
``access_admin`` only, and a command another module registers through the module API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_adhoc import ModAdhoc
from suricate.modules.mod_adhoc import forms as F
from suricate.modules.mod_adhoc.command import Command, CommandSession, Reply
from tests.e2e.harness import MODULES_TOML, Client, connect, disconnect, running_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
PLUGINS = ("xep_0030", "xep_0004", "xep_0050", "xep_0133")
CONFIG = """
[acl]
admins = [{user = "root"}]

[access]
adhoc_admins = [{acl = "admins", value = "allow"}]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    modules = MODULES_TOML + """
[modules.mod_adhoc]
report_commands_node = true
access_admin = "adhoc_admins"
"""
    async with running_server(tmp_path, extra=CONFIG, modules=modules) as srv:
        for name in ("root", "alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        yield srv


async def login(server: Server, name: str) -> Client:
    client = await connect(server, f"{name}@localhost/r", f"{name}-pw", direct_tls=True,
                           plugins=PLUGINS)
    client.send_presence()
    return client


async def command_nodes(client: Client, jid: str) -> dict[str, str]:
    found = await client.plugin["xep_0050"].get_commands(jid)
    return {node: name for _, node, name in found["disco_items"]["items"]}


def submit(**fields: str | list[str]) -> Any:
    from slixmpp.plugins.xep_0004 import Form

    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, value in fields.items():
        form.add_field(var=var.replace("_", "-"), value=value)
    return form


async def run_admin(client: Client, command: str, **fields: str | list[str]) -> Any:
    """execute (the form comes back) then complete with ``fields``, as XEP-0133 §3 shows."""
    adhoc = client.plugin["xep_0050"]
    first = await adhoc.send_command("localhost", f"{ADMIN}#{command}")
    assert first["command"]["status"] == "executing"
    assert first["command"]["form"]["type"] == "form"
    return await adhoc.send_command("localhost", f"{ADMIN}#{command}", action="complete",
                                    sessionid=first["command"]["sessionid"],
                                    payload=submit(**fields))


async def test_command_lists_disco_and_ping(server: Server) -> None:
    alice, root = await login(server, "alice"), await login(server, "root")
    # §2.2: a user sees what it may run; the admin sees the XEP-0133 commands too.
    mine = await command_nodes(alice, "localhost")
    assert mine == {"ping": "Ping"}
    admin = await command_nodes(root, "localhost")
    assert {f"{ADMIN}#add-user", f"{ADMIN}#delete-user", f"{ADMIN}#get-online-users-num",
            f"{ADMIN}#get-registered-users-num", f"{ADMIN}#announce",
            f"{ADMIN}#end-user-session", "ping"} <= set(admin)
    # Commands on the account itself, for its owner only.
    assert await command_nodes(alice, "alice@localhost") == {"ping": "Ping"}
    assert await command_nodes(alice, "bob@localhost") == {}
    disco: Any = alice.plugin["xep_0030"]
    info = await disco.get_info("localhost", node="ping")
    assert ("automation", "command-node", None, "Ping") in info["disco_info"]["identities"]
    assert {COMMANDS, "jabber:x:data"} <= set(info["disco_info"]["features"])
    server_info = await disco.get_info("localhost")
    assert COMMANDS in server_info["disco_info"]["features"]
    account_info = await disco.get_info("alice@localhost")
    assert COMMANDS in account_info["disco_info"]["features"]
    # report_commands_node lists the node among the server's items.
    items = await disco.get_items("localhost")
    assert ("localhost", COMMANDS, "Commands") in items["disco_items"]["items"]
    # An admin node's info is not shown to a non-admin.
    with pytest.raises(IqError) as err:
        await disco.get_info("localhost", node=f"{ADMIN}#add-user")
    assert err.value.condition == "item-not-found"
    pong = await alice.plugin["xep_0050"].send_command("localhost", "ping")
    assert pong["command"]["status"] == "completed"
    assert pong["command"]["notes"] == [("info", "Pong")]
    pong = await alice.plugin["xep_0050"].send_command("alice@localhost", "ping")
    assert pong["command"]["notes"] == [("info", "Pong")]
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0050"].send_command("localhost", "no-such-command")
    assert err.value.condition == "item-not-found"
    # Finished one-stage commands leave no session behind.
    adhoc_module = server.modules["mod_adhoc"]
    assert isinstance(adhoc_module, ModAdhoc) and not adhoc_module.sessions
    await disconnect(alice, root)


async def test_admin_commands_and_forbidden(server: Server) -> None:
    alice, root = await login(server, "alice"), await login(server, "root")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0050"].send_command("localhost", f"{ADMIN}#add-user")
    assert err.value.condition == "forbidden"

    done = await run_admin(root, "add-user", accountjid="carol@localhost",
                           password="carol-pw", password_verify="carol-pw")
    assert done["command"]["status"] == "completed"
    assert await server.auth.check_password(JID.parse("carol@localhost"), "carol-pw")
    with pytest.raises(IqError) as err:
        await run_admin(root, "add-user", accountjid="carol@localhost", password="x",
                        password_verify="x")
    assert err.value.condition == "conflict"
    with pytest.raises(IqError) as err:
        await run_admin(root, "add-user", accountjid="dave@elsewhere", password="x")
    assert err.value.condition == "not-allowed"

    counted = await root.plugin["xep_0050"].send_command(
        "localhost", f"{ADMIN}#get-registered-users-num")
    assert counted["command"]["status"] == "completed"
    assert counted["command"]["form"]["values"]["registeredusersnum"] == "4"
    # slixmpp's xep_0133 workflow (start_command with a session and its callbacks).
    answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    root.plugin["xep_0133"].get_online_users_num(session={
        "next": lambda iq, _: answered.set_result(iq),
        "error": lambda iq, _: answered.set_result(iq)})
    online = await asyncio.wait_for(answered, 5)
    assert online["type"] == "result" and online["command"]["status"] == "completed"
    assert online["command"]["form"]["values"]["onlineusersnum"] == "2"

    await run_admin(root, "delete-user", accountjids=["carol@localhost"])
    assert not await server.auth.user_exists(JID.parse("carol@localhost"))
    with pytest.raises(IqError) as err:
        await run_admin(root, "delete-user", accountjids=["carol@localhost"])
    assert err.value.condition == "item-not-found"
    await disconnect(alice, root)


async def test_announce_and_end_session(server: Server) -> None:
    bob, root = await login(server, "bob"), await login(server, "root")
    headlines: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("message", headlines.put_nowait)
    done = await run_admin(root, "announce", subject="Maintenance",
                           announcement=["Back in", "five minutes"])
    assert done["command"]["notes"][0][0] == "info"
    message = await asyncio.wait_for(headlines.get(), 5)
    assert message["type"] == "headline" and str(message["from"]) == "localhost"
    assert message["subject"] == "Maintenance"
    assert message["body"] == "Back in\nfive minutes"

    ended: asyncio.Event = asyncio.Event()
    bob.add_event_handler("disconnected", lambda _: ended.set())
    await run_admin(root, "end-user-session", accountjids=["bob@localhost"])
    await asyncio.wait_for(ended.wait(), 5)
    assert server.sessions.count_user(JID.parse("bob@localhost")) == 0
    await disconnect(root)


async def test_sessions_next_prev_complete_cancel(server: Server) -> None:
    """A two-stage command registered by 'another module' through the module API."""

    async def step(session: CommandSession, action: str,
                   values: dict[str, list[str]] | None) -> Reply:
        if values:
            session.data.update(values)
        if action == "complete":
            return Reply("completed", notes=[("info", f"colour={session.data['colour'][0]} "
                                                      f"size={session.data['size'][0]}")])
        x = F.form("urn:example:wizard")
        if session.stage == 0:
            F.field(x, "colour", "text-single", "Colour")
            return Reply("executing", x, actions=("next",), default="next")
        F.field(x, "size", "text-single", "Size")
        return Reply("executing", x, actions=("prev", "complete"), default="complete")

    adhoc_module = server.modules["mod_adhoc"]
    assert isinstance(adhoc_module, ModAdhoc)
    adhoc_module.register_command(Command("urn:example:wizard", "Wizard", "local", step,
                                          lambda frm, to: True))
    alice = await login(server, "alice")
    adhoc = alice.plugin["xep_0050"]
    assert "urn:example:wizard" in await command_nodes(alice, "localhost")

    def answer(var: str, value: str) -> Any:
        from slixmpp.plugins.xep_0004 import Form

        form = Form()
        form["type"] = "submit"
        form.add_field(var=var, value=value)
        return form

    first = await adhoc.send_command("localhost", "urn:example:wizard")
    sid = first["command"]["sessionid"]
    assert set(first["command"]["actions"]) == {"next"}
    # complete is not offered at the first stage: §4.4 bad-action.
    with pytest.raises(IqError) as err:
        await adhoc.send_command("localhost", "urn:example:wizard", action="complete",
                                 sessionid=sid)
    assert err.value.iq["error"]["condition"] == "bad-request"
    assert err.value.iq.xml.find(f".//{{{COMMANDS}}}bad-action") is not None
    second = await adhoc.send_command("localhost", "urn:example:wizard", action="next",
                                      sessionid=sid, payload=answer("colour", "red"))
    assert set(second["command"]["actions"]) == {"prev", "complete"}
    back = await adhoc.send_command("localhost", "urn:example:wizard", action="prev",
                                    sessionid=sid)
    assert "colour" in {f["var"] for f in back["command"]["form"]["fields"]}
    await adhoc.send_command("localhost", "urn:example:wizard", action="next", sessionid=sid,
                             payload=answer("colour", "blue"))
    done = await adhoc.send_command("localhost", "urn:example:wizard", action="complete",
                                    sessionid=sid, payload=answer("size", "L"))
    assert done["command"]["status"] == "completed"
    assert done["command"]["notes"] == [("info", "colour=blue size=L")]
    # The session is over: its id is not known any more.
    with pytest.raises(IqError) as err:
        await adhoc.send_command("localhost", "urn:example:wizard", action="next",
                                 sessionid=sid)
    assert err.value.iq.xml.find(f".//{{{COMMANDS}}}bad-sessionid") is not None

    started = await adhoc.send_command("localhost", "urn:example:wizard")
    cancelled = await adhoc.send_command("localhost", "urn:example:wizard", action="cancel",
                                         sessionid=started["command"]["sessionid"])
    assert cancelled["command"]["status"] == "canceled"
    with pytest.raises(IqError) as err:
        await adhoc.send_command("localhost", "urn:example:wizard", action="next",
                                 sessionid=started["command"]["sessionid"])
    assert err.value.condition == "bad-request"
    # A session open when its requester leaves goes with the stream.
    await adhoc.send_command("localhost", "urn:example:wizard")
    assert len(adhoc_module.sessions) == 1
    await disconnect(alice)
    for _ in range(100):
        if not adhoc_module.sessions:
            break
        await asyncio.sleep(0.02)
    assert not adhoc_module.sessions
