"""GraphQL subscriptions over Server-Sent Events (``stanza { subscribeForMessages }`` at
``{path}/sse``, MongooseIM 6.4's ``mongoose_graphql_sse_handler``): real HTTP (aiohttp's
client) on a real server, real XMPP (slixmpp) sending the messages."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from suricate.core.server import Server
from suricate.jid import JID
from suricate.xml.parser import parse_fragment
from tests.e2e.harness import connect, disconnect, eventually
from tests.ops.harness import ADMIN, admin, basic, gql, ops_server
from tests.ops.test_rest_client_api import EventStream, sse_resources

ALICE = "alice@localhost"
FIELDS = "sender timestamp stanza_id stanza"
USER_SUB = f"subscription {{ stanza {{ subscribeForMessages {{ {FIELDS} }} }} }}"
ADMIN_SUB = (f"subscription S($c: JID!) {{ stanza {{ subscribeForMessages(caller: $c) "
             f"{{ {FIELDS} }} }} }}")


async def register(server: Server, *users: str) -> None:
    for user in users:
        await admin(server, 'mutation($u: String) { account { registerUser(domain: "localhost",'
                    ' username: $u, password: "pw") { jid } } }', u=user)


@asynccontextmanager
async def http_client(server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
            f"http://127.0.0.1:{server.http_port}") as session:  # type: ignore[attr-defined]
        yield session


def params(query: str, variables: dict[str, Any] | None = None,
           operation: str | None = None) -> dict[str, str]:
    """The GET form of an operation (GraphQL over HTTP, as 6.4's gather reads it)."""
    out = {"query": query}
    if variables is not None:
        out["variables"] = json.dumps(variables)
    if operation is not None:
        out["operationName"] = operation
    return out


def stanza_map(data: Any) -> dict[str, Any]:
    """The StanzaMap of an event's data (6.4's whole GraphQL result)."""
    assert set(data) == {"data"}, data
    found = data["data"]["stanza"]["subscribeForMessages"]
    assert set(found) == {"sender", "timestamp", "stanza_id", "stanza"}, found
    return dict(found)


def delivered_at(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


async def test_user_subscription_streams_each_message_delivered(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server, http_client(server) as http:
        await register(server, "alice", "bob")
        laptop = await connect(server, f"{ALICE}/laptop", "pw")
        laptop.send_presence()
        bob = await connect(server, "bob@localhost/pc", "pw")
        async with http.get("/api/graphql/user/sse", params=params(USER_SUB),
                            headers=basic(ALICE, "pw")) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            events = EventStream(response)
            # The stream is a session of the account (6.4's open_session: sse-<uuid>).
            await eventually(lambda: len(sse_resources(server, ALICE)) == 1)

            before = time.time()
            message = bob.make_message(mto=ALICE, mbody="hi alice", mtype="chat")
            message["id"] = "m-1"
            message.send()
            name, number, data = await events.next()
            assert (name, number) == ("message", "1")  # no event name: an EventSource message
            got = stanza_map(data)
            assert got["sender"] == "bob@localhost/pc"
            assert got["stanza_id"] == "m-1"
            assert before - 1 <= delivered_at(got["timestamp"]) <= time.time() + 1
            (element,) = parse_fragment(got["stanza"])
            assert element.name == "message" and element.attrs["type"] == "chat"
            assert element.find_text("body") == "hi alice"
            assert element.attrs["to"] == ALICE and element.attrs["from"] == "bob@localhost/pc"
            # The account's XMPP session got it too: the stream takes nothing from it.
            assert (await asyncio.wait_for(laptop.messages.get(), 5))["body"] == "hi alice"

            # A presence gives no event; a headline without an id does (6.4: every message,
            # its stanza_id empty).
            bob.send_presence(pto=ALICE)
            headline = bob.make_message(mto=ALICE, mbody="news", mtype="headline")
            del headline["id"]
            headline.send()
            name, number, data = await events.next()
            got = stanza_map(data)
            assert number == "2" and got["stanza_id"] == ""
            assert parse_fragment(got["stanza"])[0].attrs["type"] == "headline"

            # A message the admin API sends reaches the stream as well.
            await admin(server, 'mutation { stanza { sendMessage(from: "bob@localhost", '
                        f'to: "{ALICE}", body: "from the API") {{ id }} }} }}')
            _, number, data = await events.next()
            got = stanza_map(data)
            assert number == "3" and got["sender"] == "bob@localhost"
            assert parse_fragment(got["stanza"])[0].find_text("body") == "from the API"

        # The client closed the stream: its session leaves the table; with no session left a
        # message waits in offline storage for the next XMPP login, nothing is lost.
        await eventually(lambda: not sse_resources(server, ALICE), timeout=5)
        await disconnect(laptop)
        await eventually(lambda: not server.sessions.resources(JID.parse(ALICE)))
        bob.send_message(mto=ALICE, mbody="after the stream", mtype="chat")
        await asyncio.sleep(0.3)
        laptop = await connect(server, f"{ALICE}/laptop", "pw")
        laptop.send_presence()
        assert (await asyncio.wait_for(laptop.messages.get(), 5))["body"] == "after the stream"
        await disconnect(laptop, bob)


async def test_admin_subscription_names_the_caller(tmp_path: Path) -> None:
    async with ops_server(tmp_path, allowed="sse_idle_timeout = 1500") as server, \
            http_client(server) as http:
        await register(server, "alice", "bob")
        bob = await connect(server, "bob@localhost/pc", "pw")
        async with http.get("/api/graphql/sse", params=params(ADMIN_SUB, {"c": ALICE}, "S"),
                            headers=basic(*ADMIN)) as response:
            assert response.status == 200, await response.text()
            events = EventStream(response)
            await eventually(lambda: len(sse_resources(server, ALICE)) == 1)
            # The stream is the account's only session: a message to the bare JID is
            # delivered to it (6.4: an open SSE session is a present resource).
            bob.send_message(mto=ALICE, mbody="to the stream", mtype="chat")
            _, number, data = await events.next()
            got = stanza_map(data)
            assert number == "1" and got["sender"] == "bob@localhost/pc"
            assert parse_fragment(got["stanza"])[0].find_text("body") == "to the stream"
            # sse_idle_timeout (1.5 s here): the stream ends without events for that long.
            started = time.monotonic()
            assert await asyncio.wait_for(response.content.read(), 10) == b""
            assert 1.0 <= time.monotonic() - started < 5
        await eventually(lambda: not sse_resources(server, ALICE))

        # Refusals answer the first run's result as JSON, with no stream and no session
        # (6.4: the operation's errors, status 200).
        for variables, code in (({"c": "nobody@localhost"}, "unknown_user"),
                                ({"c": "alice@elsewhere.example"}, "unknown_user")):
            async with http.get("/api/graphql/sse", params=params(ADMIN_SUB, variables),
                                headers=basic(*ADMIN)) as response:
                assert response.status == 200
                assert response.content_type == "application/json"
                result = await response.json()
            assert result["data"]["stanza"]["subscribeForMessages"] is None
            assert result["errors"][0]["extensions"]["code"] == code, result
        # A domain admin subscribes for the accounts of its domain only.
        await admin(server, 'mutation { domain { setDomainPassword(domain: "localhost", '
                    'password: "dpw") } }')
        await admin(server, 'mutation { domain { addDomain(domain: "dyn.example", '
                    'hostType: "dynamic") { domain } } }')
        async with http.get("/api/graphql/domain/sse",
                            params=params(ADMIN_SUB, {"c": "ann@dyn.example"}),
                            headers=basic("admin@localhost", "dpw")) as response:
            result = await response.json()
        assert result["errors"][0]["extensions"]["code"] == "no_permissions", result
        assert not sse_resources(server, "ann@dyn.example")
        async with http.get("/api/graphql/domain/sse", params=params(ADMIN_SUB, {"c": ALICE}),
                            headers=basic("admin@localhost", "dpw")) as response:
            assert response.content_type == "text/event-stream"
            await eventually(lambda: len(sse_resources(server, ALICE)) == 1)
        await eventually(lambda: not sse_resources(server, ALICE))
        await disconnect(bob)


async def test_what_sse_refuses(tmp_path: Path) -> None:
    async with ops_server(tmp_path) as server, http_client(server) as http:
        await register(server, "alice")

        async def get(path: str, query: dict[str, str],
                      auth: tuple[str, str] | None) -> tuple[int, Any]:
            headers = basic(*auth) if auth is not None else {}
            async with http.get(path, params=query, headers=headers) as response:
                assert response.content_type == "application/json"
                return response.status, await response.json()

        # Credentials as for the endpoint itself: 401, GraphQL's error shape.
        for path, auth in (("/api/graphql/user/sse", (ALICE, "wrong")),
                           ("/api/graphql/user/sse", None),
                           ("/api/graphql/sse", ("admin", "wrong"))):
            status, body = await get(path, params(USER_SUB), auth)
            assert status == 401, (path, auth, body)
            assert body["errors"][0]["extensions"]["code"] == "no_permissions"
        user = (ALICE, "pw")
        # No query, a query that is not GraphQL, variables that are not JSON: 400.
        status, body = await get("/api/graphql/user/sse", {}, user)
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "bad_request"
        status, body = await get("/api/graphql/user/sse",
                                 params("subscription { stanza { subscribe"), user)
        assert status == 400, body
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "parsing_error" and error["message"]
        assert error["locations"] == [{"line": 1, "column": 34}]  # the end of the text
        status, body = await get("/api/graphql/user/sse",
                                 {"query": USER_SUB, "variables": "{not json"}, user)
        assert status == 400
        status, body = await get("/api/graphql/user/sse",
                                 params("subscription { stanza { subscribeForMessage } }"),
                                 user)
        assert status == 400
        assert body["errors"][0]["extensions"]["code"] == "validation_error"
        # A query or a mutation is not served at /sse (6.4: 400), nor a subscription at the
        # endpoint itself.
        for query in ("{ session { countResources } }",
                      'mutation { stanza { sendMessage(to: "bob@localhost", body: "x") '
                      '{ id } } }'):
            status, body = await get("/api/graphql/user/sse", params(query), user)
            assert status == 400 and "only subscriptions" in body["errors"][0]["message"]
        status, body = await gql(server, USER_SUB, auth=user, path="/api/graphql/user")
        assert status == 400
        assert "GET /api/graphql/user/sse" in body["errors"][0]["message"], body
        status, body = await get("/api/graphql/user", params(USER_SUB), user)
        assert status == 400
        # Only GET (6.4's lasse handler: 405).
        async with http.post("/api/graphql/user/sse", json={"query": USER_SUB},
                             headers=basic(*user)) as response:
            assert response.status == 405 and response.headers["allow"] == "GET"
        # Nothing above opened a session.
        assert not server.sessions.resources(JID.parse(ALICE))
