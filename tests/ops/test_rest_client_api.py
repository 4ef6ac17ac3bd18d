"""The REST client API as a user's messaging path: what it sends is the sender's too (archive,
carbons, as MongooseIM 6.4's mongoose_stanza_api runs the sender's send hooks), and ``GET /sse``
streams what reaches the user. Real HTTP (aiohttp's client) and real XMPP (slixmpp)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, eventually
from tests.mam.test_mam import archive, forwarded_body, next_of, queue_of, stanza_id
from tests.ops.harness import basic
from tests.ops.test_rest_api import ADMIN, alice_auth, online, register, rest_server

PLUGINS = ("xep_0030", "xep_0059", "xep_0280", "xep_0313", "xep_0359")
ALICE = "alice@localhost"


async def test_a_message_sent_through_the_apis_is_the_senders_too(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        phone = await connect(server, f"{ALICE}/phone", "pw", plugins=PLUGINS)
        phone.send_presence()
        await phone.plugin["xep_0280"].enable()
        carbons = queue_of(phone, "message/carbon_sent")
        bob = await online(server, "bob@localhost/pc")

        status, sent = await api("POST", "/api/client/messages",
                                 {"to": "bob@localhost", "body": "from the API"},
                                 auth=alice_auth())
        assert status == 200
        received = await asyncio.wait_for(bob.messages.get(), 5)
        assert received["body"] == "from the API" and received["id"] == sent["id"]
        bob_id = stanza_id(received, "bob@localhost")
        assert bob_id is not None
        assert stanza_id(received, ALICE) is None  # the sender's id is for its carbons only
        # XEP-0280: every carbon-enabled session of the sender gets a <sent/> copy (6.4: the
        # sender is the bare JID, so no resource is left out), with the sender's stanza-id.
        carbon = (await next_of(carbons))["carbon_sent"]
        assert carbon["body"] == "from the API" and carbon["id"] == sent["id"]
        alice_id = stanza_id(carbon, ALICE)
        assert alice_id is not None and alice_id != bob_id

        # The sender's archive, read through the API and through XEP-0313.
        async def in_alice_archive() -> bool:
            return bool((await api("GET", "/api/client/messages/bob@localhost",
                                   auth=alice_auth()))[1])
        await eventually(in_alice_archive)
        status, rows = await api("GET", "/api/client/messages", auth=alice_auth())
        assert status == 200 and len(rows) == 1
        assert rows[0]["from"] == ALICE and rows[0]["to"] == "bob@localhost"
        assert rows[0]["id"] == sent["id"] and rows[0]["body"] == "from the API"
        (result,) = await archive(phone)
        assert forwarded_body(result) == "from the API"
        assert result["mam_result"]["id"] == alice_id  # the id its carbon announced

        # The admin API (6.4's caller) sending as the phone itself: archived for alice, no
        # carbon to the phone (6.4 leaves the sending resource out); the next carbon it gets
        # is the one of the client API's message that follows.
        assert (await api("POST", "/api/messages", {"caller": f"{ALICE}/phone",
                                                    "to": "bob@localhost",
                                                    "body": "as the phone"}))[0] == 204
        assert (await asyncio.wait_for(bob.messages.get(), 5))["body"] == "as the phone"
        await api("POST", "/api/client/messages", {"to": "bob@localhost", "body": "third"},
                  auth=alice_auth())
        assert (await next_of(carbons))["carbon_sent"]["body"] == "third"

        async def all_three() -> bool:
            return len((await api("GET", "/api/client/messages", auth=alice_auth()))[1]) == 3
        await eventually(all_three)
        bodies = [forwarded_body(m) for m in await archive(phone)]
        assert bodies == ["from the API", "as the phone", "third"]
        # bob's archive has each once
        bob_rows = (await api("GET", "/api/client/messages",
                              auth=("bob@localhost", "pw")))[1]
        assert sorted(r["body"] for r in bob_rows) == ["as the phone", "from the API", "third"]
        await disconnect(phone, bob)


class EventStream:
    """A GET /sse read with aiohttp: its events as (name, id, data)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> tuple[str, str, Any]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> tuple[str, str, Any]:
        fields: dict[str, str] = {}
        while True:
            line = (await self.response.content.readline()).decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line == "":
                if "data" in fields:
                    return fields.get("event", "message"), fields.get("id", ""), \
                        json.loads(fields["data"])
                continue
            if line.startswith(":"):
                continue  # a comment (keepalive)
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def sse_resources(server: Any, bare: str) -> list[str]:
    return [str(s.jid.resource) for s in server.sessions.resources(JID.parse(bare))
            if str(s.jid.resource).startswith("sse-")]


async def test_sse_streams_messages_and_room_events(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice", "bob")
        laptop = await online(server, f"{ALICE}/laptop")
        bob = await online(server, "bob@localhost/pc")
        session: aiohttp.ClientSession = api.session
        async with session.get("/api/client/sse") as refused:
            assert refused.status == 401
        async with session.get("/api/client/sse", headers={
                **basic(*alice_auth()), "accept": "text/event-stream"}) as response:
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            events = EventStream(response)
            await eventually(lambda: len(sse_resources(server, ALICE)) == 1)

            # A chat message to the bare JID: the stream and the XMPP session both get it.
            bob.send_message(mto=ALICE, mbody="hi alice", mtype="chat")
            name, number, data = await events.next()
            assert (name, number) == ("message", "1")
            assert data["body"] == "hi alice" and data["to"] == ALICE
            assert data["from"] == "bob@localhost/pc" and data["id"]
            assert isinstance(data["timestamp"], int)
            assert (await asyncio.wait_for(laptop.messages.get(), 5))["body"] == "hi alice"

            # MUC Light: being added is an affiliation event, a member's message a message.
            status, created = await api("POST", "/api/client/rooms",
                                        {"name": "Den", "subject": "s"},
                                        auth=("bob@localhost", "pw"))
            assert status == 201
            room = created["id"]
            assert (await api("POST", f"/api/client/rooms/{room}/users", {"user": ALICE},
                              auth=("bob@localhost", "pw")))[0] == 204
            name, number, data = await events.next()
            assert (name, number) == ("room.message", "2")
            assert data["type"] == "affiliation" and data["user"] == ALICE
            assert data["affiliation"] == "member" and data["room"] == room
            assert (await api("POST", f"/api/client/rooms/{room}/messages",
                              {"body": "to the den"}, auth=("bob@localhost", "pw")))[0] == 200
            name, _, data = await events.next()
            assert name == "room.message"
            assert data == {"id": data["id"], "from": "bob@localhost", "room": room,
                            "type": "message", "body": "to the den",
                            "timestamp": data["timestamp"]}

            # With the stream as alice's only session, a message to her bare JID is
            # delivered to it (6.4: an open SSE session is a present resource), not stored.
            await disconnect(laptop)
            await eventually(lambda: len(server.sessions.resources(JID.parse(ALICE))) == 1)
            bob.send_message(mto=ALICE, mbody="only the stream", mtype="chat")
            name, _, data = await events.next()
            assert (name, data["body"]) == ("message", "only the stream")
            # A message sent through the API by another user reaches the stream as well.
            await api("POST", "/api/client/messages", {"to": ALICE, "body": "via REST"},
                      auth=("bob@localhost", "pw"))
            name, _, data = await events.next()
            assert (name, data["body"], data["from"]) == ("message", "via REST",
                                                          "bob@localhost")

        # The client closed the stream: the session leaves the table, and what comes next
        # waits in offline storage for an XMPP session.
        await eventually(lambda: not sse_resources(server, ALICE), timeout=5)
        bob.send_message(mto=ALICE, mbody="after the stream", mtype="chat")
        await asyncio.sleep(0.3)
        laptop = await online(server, f"{ALICE}/laptop")
        first = await asyncio.wait_for(laptop.messages.get(), 5)
        assert first["body"] == "after the stream"
        await asyncio.sleep(0.3)
        assert laptop.messages.empty()  # what the stream took was not stored as well
        await disconnect(laptop, bob)


async def test_sse_ends_when_the_account_is_removed(tmp_path: Path) -> None:
    async with rest_server(tmp_path) as (server, api):
        await register(api, "alice")
        session: aiohttp.ClientSession = api.session
        async with session.get("/api/client/sse", headers=basic(*alice_auth())) as response:
            assert response.status == 200
            await eventually(lambda: len(sse_resources(server, ALICE)) == 1)
            assert (await api("DELETE", "/api/users/localhost/alice", auth=ADMIN))[0] == 204
            assert await asyncio.wait_for(response.content.read(), 5) == b""
        assert not sse_resources(server, ALICE)
