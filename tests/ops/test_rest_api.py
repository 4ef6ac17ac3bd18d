"""MongooseIM 6.4's REST admin and client APIs (``mongoose_admin_api``,
``mongoose_client_api``) over real HTTP (aiohttp's client), with slixmpp clients on the other
side where a message or a kick must be seen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from suricate.admin import HTTP_HANDLERS
from suricate.config import parse_config
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually, free_port, server_toml
from tests.ops.harness import basic
from tests.ops.test_graphql import watch_disconnect

ADMIN = ("admin", "s3cret")
MODULES_WITH_ARCHIVE = MODULES_TOML + """
[modules.mod_mam]
[modules.mod_mam.pm]
[modules.mod_muc_light]
[modules.mod_muc]
[modules.mod_inbox]
[modules.mod_carboncopy]
"""


def rest_toml(http: int, admin_handlers: str = "", client_handlers: str = "") -> str:
    return f"""
[[listen.http]]
port = {http}
ip_address = "127.0.0.1"

[[listen.http.handlers.mongoose_admin_api]]
host = "_"
path = "/api"
username = "admin"
password = "s3cret"
{admin_handlers}

[[listen.http.handlers.mongoose_client_api]]
host = "_"
path = "/api/client"
{client_handlers}
"""


@contextlib.asynccontextmanager
async def rest_server(tmp: Path, **kwargs: str) -> AsyncIterator[tuple[Server, Api]]:
    c2s, tls, http = free_port(), free_port(), free_port()
    text = server_toml(tmp, c2s, tls, rest_toml(http, **kwargs), modules=MODULES_WITH_ARCHIVE)
    text = text.replace('default_server_domain = "localhost"',
                        'default_server_domain = "localhost"\nhost_types = ["dynamic"]', 1)
    server = Server(parse_config(text, tmp), tmp, MODULES, http_handlers=HTTP_HANDLERS)
    await server.start()
    server.c2s_port = c2s  # type: ignore[attr-defined]
    server.tls_port = tls  # type: ignore[attr-defined]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{http}") as session:
            yield server, Api(session)
    finally:
        await server.stop()


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, method: str, path: str, body: Any = None,
                       auth: tuple[str, str] | None = ADMIN, raw: bytes | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if auth is not None:
            headers.update(basic(*auth))
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, path, **kwargs) as resp:
            text = await resp.text()
            if resp.content_type == "application/json" and text:
                return resp.status, await resp.json()
            return resp.status, text


async def online(server: Server, jid: str) -> Any:
    """A connected client that sent its initial presence (messages to the bare JID reach
    it)."""
    client = await connect(server, jid, "pw")
    client.send_presence()
    bare = JID.parse(jid).bare
    await eventually(lambda: any(s.available for s in server.sessions.resources(bare)))
    return client


def drain(client: Any) -> list[Any]:
    found = []
    while not client.messages.empty():
        found.append(client.messages.get_nowait())
    return found


def alice_auth(password: str = "pw") -> tuple[str, str]:
    return ("alice@localhost", password)


async def register(api: Api, *names: str) -> None:
    for name in names:
        status, _ = await api("POST", "/api/users/localhost",
                              {"username": name, "password": "pw"})
        assert status == 201


async def test_admin_users_and_sessions(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        status, text = await api("POST", "/api/users/localhost",
                                 {"username": "alice", "password": "pw"})
        assert status == 201 and "alice@localhost" in text
        assert (await api("POST", "/api/users/localhost",
                          {"username": "alice", "password": "x"}))[0] == 403
        status, err = await api("POST", "/api/users/localhost", {"username": "bob"})
        assert status == 400 and err == {"error": "bad_request", "message": "Missing password"}
        assert await api("GET", "/api/users/localhost") == (200, ["alice@localhost"])
        assert (await api("GET", "/api/users/localhost", auth=None))[0] == 401
        assert (await api("GET", "/api/users/localhost",
                          auth=("admin", "no")))[0] == 401

        alice = await connect(server, "alice@localhost/phone", "pw")
        assert await api("GET", "/api/sessions/localhost") == (200, ["alice@localhost/phone"])
        gone = watch_disconnect(alice)
        assert (await api("DELETE", "/api/sessions/localhost/alice/phone"))[0] == 204
        await asyncio.wait_for(gone, 5)
        assert (await api("DELETE", "/api/sessions/localhost/alice/phone"))[0] == 404

        assert (await api("PUT", "/api/users/localhost/alice", {"newpass": "new"}))[0] == 204
        alice = await connect(server, "alice@localhost/phone", "new")
        await disconnect(alice)
        assert (await api("DELETE", "/api/users/localhost/alice"))[0] == 204
        assert (await api("DELETE", "/api/users/localhost/alice"))[0] == 404
        assert (await api("GET", "/api/users/nowhere.example"))[0] == 404


async def test_admin_messages_stanzas_and_archive(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        bob = await online(server, "bob@localhost/pc")
        status, _ = await api("POST", "/api/messages",
                              {"caller": "alice@localhost", "to": "bob@localhost",
                               "body": "hi from REST"})
        assert status == 204
        received = await asyncio.wait_for(bob.messages.get(), 5)
        assert received["body"] == "hi from REST" and received["from"].bare == "alice@localhost"
        assert (await api("POST", "/api/stanzas", {
            "stanza": "<message from='alice@localhost' to='bob@localhost/pc' type='chat'>"
                      "<body>raw</body></message>"}))[0] == 204
        assert (await asyncio.wait_for(bob.messages.get(), 5))["body"] == "raw"
        assert (await api("POST", "/api/stanzas", {"stanza": "<message"}))[0] == 400
        assert (await api("POST", "/api/messages", {"caller": "nobody@localhost",
                                                    "to": "bob@localhost", "body": "x"}))[0] == 400

        # The recipient's archive (the sender's: see docs/http.md, not through the API).
        async def archived() -> bool:
            return len((await api("GET", "/api/messages/bob@localhost"))[1]) == 2
        await eventually(archived)
        status, rows = await api("GET", "/api/messages/bob@localhost/alice@localhost?limit=1")
        assert status == 200 and len(rows) == 1
        assert rows[0]["body"] == "raw" and rows[0]["sender"] == "alice@localhost"
        assert isinstance(rows[0]["timestamp"], int) and "message_id" in rows[0]
        assert (await api("GET", "/api/messages/bob@localhost?limit=x"))[0] == 400
        assert (await api("GET", "/api/messages/bob@localhost?limit=501"))[0] == 400
        status, old = await api("GET", "/api/messages/bob@localhost?before=1000")
        assert status == 200 and old == []
        await disconnect(bob)


async def test_admin_contacts(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (_server, api):
        await register(api, "alice", "bob", "carol")
        assert (await api("POST", "/api/contacts/alice@localhost",
                          {"jid": "bob@localhost"}))[0] == 204
        assert await api("GET", "/api/contacts/alice@localhost") == (
            200, [{"jid": "bob@localhost", "subscription": "none", "ask": "none"}])
        assert (await api("PUT", "/api/contacts/alice@localhost/bob@localhost",
                          {"action": "subscribe"}))[0] == 204

        async def asked() -> bool:
            return (await api("GET", "/api/contacts/alice@localhost"))[1][0]["ask"] == "out"
        await eventually(asked)
        assert (await api("PUT", "/api/contacts/alice@localhost/bob@localhost",
                          {"action": "dance"}))[0] == 400
        assert (await api("PUT", "/api/contacts/alice@localhost/carol@localhost/manage",
                          {"action": "connect"}))[0] == 204
        for user, other in (("alice", "carol"), ("carol", "alice")):
            _, items = await api("GET", f"/api/contacts/{user}@localhost")
            assert {"jid": f"{other}@localhost", "subscription": "both",
                    "ask": "none"} in items
        assert (await api("PUT", "/api/contacts/alice@localhost/carol@localhost/manage",
                          {"action": "disconnect"}))[0] == 204
        _, items = await api("GET", "/api/contacts/carol@localhost")
        assert items == []
        assert (await api("DELETE", "/api/contacts/alice@localhost/bob@localhost"))[0] == 204
        assert (await api("DELETE", "/api/contacts/alice@localhost/bob@localhost"))[0] == 404
        assert (await api("GET", "/api/contacts/nobody@localhost"))[0] == 404


async def test_admin_muc_light_and_domains(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        bob = await online(server, "bob@localhost/pc")
        status, room = await api("POST", "/api/muc-lights/muclight.localhost",
                                 {"owner": "alice@localhost", "name": "Hole",
                                  "subject": "tea"})
        assert status == 201 and room.endswith("@muclight.localhost")
        room_id = room.split("@")[0]
        assert (await api("POST", f"/api/muc-lights/muclight.localhost/{room_id}/participants",
                          {"sender": "alice@localhost", "recipient": "bob@localhost"}))[0] == 204
        assert (await api("POST", f"/api/muc-lights/muclight.localhost/{room_id}/messages",
                          {"from": "alice@localhost", "body": "to the room"}))[0] == 204

        async def got_room_message() -> bool:
            while not bob.messages.empty():
                if bob.messages.get_nowait()["body"] == "to the room":
                    return True
            return False
        await eventually(got_room_message)
        status, _ = await api("PUT", "/api/muc-lights/muclight.localhost",
                              {"id": room_id, "owner": "alice@localhost", "name": "x",
                               "subject": "y"})
        assert status == 403
        assert (await api("DELETE",
                          f"/api/muc-lights/muclight.localhost/{room_id}/management"))[0] == 204

        # MUC: the host's service; messages are sent as an occupant's session
        assert await api("POST", "/api/mucs/localhost", {
            "name": "cafe", "owner": "alice@localhost", "nick": "al"}) == (201, "cafe")
        bob.send_presence(pto="cafe@conference.localhost/bobby")
        await bob.next_presence(type_="available")
        assert (await api("POST", "/api/mucs/localhost/cafe/messages",
                          {"from": "bob@localhost/pc", "body": "in the cafe"}))[0] == 204
        await eventually(lambda: any(m["body"] == "in the cafe" for m in drain(bob)))
        assert (await api("DELETE", "/api/mucs/localhost/cafe/nobody"))[0] == 404
        assert (await api("DELETE", "/api/mucs/localhost/cafe/bobby"))[0] == 204
        await bob.next_presence(type_="unavailable")
        await disconnect(bob)
        assert await api("DELETE", "/api/inbox/localhost/alice/0/bin") == (200, 0)
        assert (await api("DELETE", "/api/inbox/nope/0/bin"))[0] == 404

        assert (await api("PUT", "/api/domains/dyn.example", {"host_type": "dynamic"}))[0] == 204
        assert (await api("PUT", "/api/domains/dyn.example", {"host_type": "dynamic"}))[0] == 204
        assert await api("GET", "/api/domains/dyn.example") == (
            200, {"host_type": "dynamic", "status": "enabled"})
        assert (await api("PATCH", "/api/domains/dyn.example", {"enabled": False}))[0] == 204
        assert (await api("GET", "/api/domains/dyn.example"))[1]["status"] == "disabled"
        assert (await api("PUT", "/api/domains/localhost", {"host_type": "dynamic"}))[0] == 403
        assert (await api("PUT", "/api/domains/x.example", {"host_type": "nope"}))[0] == 403
        assert (await api("DELETE", "/api/domains/dyn.example", {"host_type": "dynamic"}))[0] \
            == 204
        assert (await api("GET", "/api/domains/dyn.example"))[0] == 404


async def test_client_api(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        bob = await online(server, "bob@localhost/pc")
        assert (await api("GET", "/api/client/contacts", auth=alice_auth("bad")))[0] == 401
        assert (await api("GET", "/api/client/contacts", auth=ADMIN))[0] == 401
        status, sent = await api("POST", "/api/client/messages",
                                 {"to": "bob@localhost", "body": "hello bob"},
                                 auth=alice_auth())
        assert status == 200 and sent["id"]
        received = await asyncio.wait_for(bob.messages.get(), 5)
        assert received["body"] == "hello bob" and received["id"] == sent["id"]

        bob_auth = ("bob@localhost", "pw")  # bob reads his archive through the API too

        async def archived() -> bool:
            return bool((await api("GET", "/api/client/messages/alice@localhost",
                                   auth=bob_auth))[1])
        await eventually(archived)
        status, rows = await api("GET", "/api/client/messages?limit=10", auth=bob_auth)
        assert status == 200 and rows[0]["body"] == "hello bob"
        assert rows[0]["from"] == "alice@localhost" and rows[0]["id"] == sent["id"]
        assert isinstance(rows[0]["timestamp"], int)

        assert (await api("POST", "/api/client/contacts", {"jid": "bob@localhost"},
                          auth=alice_auth()))[0] == 204
        assert await api("GET", "/api/client/contacts", auth=alice_auth()) == (
            200, [{"jid": "bob@localhost", "subscription": "none", "ask": "none"}])
        assert (await api("PUT", "/api/client/contacts/bob@localhost", {"action": "invite"},
                          auth=alice_auth()))[0] == 204
        request = await asyncio.wait_for(bob.presences.get(), 5)
        while request["type"] != "subscribe":
            request = await asyncio.wait_for(bob.presences.get(), 5)
        assert request["from"].bare == "alice@localhost"
        assert (await api("PUT", "/api/client/contacts/carol@localhost", {"action": "invite"},
                          auth=alice_auth()))[0] == 404

        status, created = await api("POST", "/api/client/rooms",
                                    {"name": "Den", "subject": "s"}, auth=alice_auth())
        assert status == 201
        room = created["id"]
        assert (await api("POST", f"/api/client/rooms/{room}/users", {"user": "bob@localhost"},
                          auth=alice_auth()))[0] == 204
        status, details = await api("GET", f"/api/client/rooms/{room}", auth=alice_auth())
        assert status == 200 and details["name"] == "Den"
        assert {"user": "bob@localhost", "role": "member"} in details["participants"]
        assert (await api("GET", "/api/client/rooms", auth=alice_auth()))[1] == [
            {"id": room, "name": "Den", "subject": "s"}]
        status, _ = await api("POST", f"/api/client/rooms/{room}/messages", {"body": "yo"},
                              auth=alice_auth())
        assert status == 200
        await disconnect(bob)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'"x"', b"{\"username\": 5}",
                                 b"\xff\xfe", b"{\"username\": null, \"password\": []}"])
async def test_malformed_bodies_are_400(tmp_path: Path, raw: bytes) -> None:
    async with rest_server(tmp_path) as (_server, api):
        headers = {"content-type": "application/json"}
        for method, path, auth in (
                ("POST", "/api/users/localhost", ADMIN), ("POST", "/api/messages", ADMIN),
                ("PUT", "/api/domains/d.example", ADMIN),
                ("PATCH", "/api/domains/d.example", ADMIN),
                ("PUT", "/api/contacts/a@localhost/b@localhost/manage", ADMIN),
                ("POST", "/api/client/messages", None)):
            status, body = await api(method, path, raw=raw, headers=headers, auth=auth)
            assert status in (400, 401), (method, path, status, body)
            if status == 400:
                assert body["error"] == "bad_request" and body["message"]


async def test_handlers_option_and_not_implemented(tmp_path: Path) -> None:
    async with rest_server(tmp_path, admin_handlers='handlers = ["users", "metrics"]',
                           client_handlers='handlers = ["sse", "messages"]') as (_s, api):
        assert (await api("GET", "/api/users/localhost"))[0] == 200
        status, body = await api("GET", "/api/sessions/localhost")
        assert status == 404 and body["error"] == "not_found"
        status, body = await api("GET", "/api/metrics")
        assert status == 501 and "prometheus" in body["message"]
        status, body = await api("GET", "/api/client/sse", auth=None)
        assert status == 401 and body["error"] == "unauthorized"
        assert (await api("POST", "/api/client/sse", auth=None))[0] == 405
        assert (await api("GET", "/api/client/contacts", auth=None))[0] == 404
        status, body = await api("DELETE", "/api/users/localhost")
        assert status == 405 and body["error"] == "method_not_allowed"
