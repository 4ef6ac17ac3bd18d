"""mod_push_service_mongoosepush against a real local HTTP server standing in for MongoosePush:
a slixmpp client enables push on the virtual app server `push.localhost`, goes away, and a
message to it becomes `POST /v3/notification/<device_id>`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from aiohttp import web

from suricate.config import ConfigError, parse_config
from suricate.core.server import Server
from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import Client, connect, disconnect, eventually, free_port, running_server
from tests.mobile.conftest import add_user, modules_toml

PUSH = "urn:xmpp:push:0"


class FakeMongoosePush:
    """Records each request; answers with `status`."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.put_nowait((request.raw_path, json.loads(await request.text())))
        return web.Response(status=self.status, text="")


@contextlib.asynccontextmanager
async def mongoosepush_server(tmp: Path, tls: str | None = None
                              ) -> AsyncIterator[tuple[Server, FakeMongoosePush]]:
    """``tls``: the pool's tls table; MongoosePush then answers over https with a
    self-signed certificate for "localhost", as it does out of the box."""
    fake = FakeMongoosePush()
    app = web.Application()
    app.router.add_post("/push/v3/notification/{device}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    context = None
    if tls is not None:
        cert, _ = ensure_self_signed(tmp / "mongoosepush", ["localhost"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.certfile, cert.keyfile)
        tls = tls.replace("CERT", str(cert.certfile))
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    pools = f"""
[outgoing_pools.http.mongoose_push_http.connection]
host = "{'https://localhost' if tls is not None else 'http://127.0.0.1'}:{port}"
path_prefix = "/push"
request_timeout = 2000
{tls or ""}
"""
    modules = modules_toml(
        '[modules.mod_event_pusher.push]\nvirtual_pubsub_hosts = ["push.@HOST@"]\n'
        '[modules.mod_push_service_mongoosepush]\npool_name = "mongoose_push_http"\n')
    try:
        async with running_server(tmp, extra=pools, modules=modules) as server:
            await add_user(server, "alice")
            await add_user(server, "bob")
            yield server, fake
    finally:
        await runner.cleanup()


def options_form(**fields: str) -> str:
    values = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
            f"http://jabber.org/protocol/pubsub#publish-options</value></field>{values}</x>")


async def enable_and_leave(server: Server, **fields: str) -> None:
    phone: Client = await connect(server, "alice@localhost/phone", "secret")
    iq = phone.make_iq_set()
    iq.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='push.localhost' node='node-1'>"
                            f"{options_form(**fields)}</enable>"))
    await iq.send(timeout=5)
    await disconnect(phone)
    await eventually(lambda: not any(str(s.jid) == "alice@localhost/phone"
                                     for s in server.sessions))


def record_events(server: Server) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    emit = server.instrument.emit

    def recording(event: Any, labels: Any, measurements: Any) -> None:
        seen.append((event.name, dict(measurements)))
        emit(event, labels, measurements)

    server.instrument.emit = recording  # type: ignore[method-assign]
    return seen


async def test_offline_message_is_posted_to_mongoosepush(tmp_path: Path) -> None:
    async with mongoosepush_server(tmp_path) as (server, fake):
        await enable_and_leave(server, device_id="dev/123", service="apns", mode="dev",
                               topic="com.example.app", click_action="OPEN", sound="ding")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="wake up", mtype="chat")
            path, body = await asyncio.wait_for(fake.requests.get(), 5)
            assert path == "/push/v3/notification/dev%2F123"
            assert body == {"service": "apns", "mode": "dev", "topic": "com.example.app",
                            "alert": {"title": "bob@localhost/desk", "body": "wake up",
                                      "badge": 1, "tag": "bob@localhost",
                                      "click_action": "OPEN", "sound": "ding"}}
            bob.send_message(mto="alice@localhost", mbody="again", mtype="chat")
            _, second = await asyncio.wait_for(fake.requests.get(), 5)
            assert second["alert"]["badge"] == 2 and second["alert"]["body"] == "again"
        finally:
            await disconnect(bob)


async def test_silent_push_sends_data(tmp_path: Path) -> None:
    async with mongoosepush_server(tmp_path) as (server, fake):
        await enable_and_leave(server, device_id="fcm-token", service="fcm", silent="true")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="psst", mtype="chat")
            path, body = await asyncio.wait_for(fake.requests.get(), 5)
            assert path == "/push/v3/notification/fcm-token"
            assert body == {"service": "fcm", "mode": "prod",
                            "data": {"message-count": 1,
                                     "last-message-sender": "bob@localhost/desk",
                                     "last-message-body": "psst"}}
        finally:
            await disconnect(bob)


async def test_errors_are_counted_and_messages_still_stored(tmp_path: Path) -> None:
    async with mongoosepush_server(tmp_path) as (server, fake):
        seen = record_events(server)
        fake.status = 500
        await enable_and_leave(server, device_id="d1", service="fcm")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="one", mtype="chat")
            await asyncio.wait_for(fake.requests.get(), 5)
            await eventually(lambda: ("mod_push_service_mongoosepush_sent",
                                      {"failure_count": 1}) in
                             [(n, {k: v for k, v in m.items() if k != "response_time"})
                              for n, m in seen])
            await eventually(lambda: ("mod_event_pusher_push_sent", {"failure_count": 1})
                             in seen)
            fake.status = 200
            bob.send_message(mto="alice@localhost", mbody="two", mtype="chat")
            _, body = await asyncio.wait_for(fake.requests.get(), 5)
            assert body["alert"]["body"] == "two"
            await eventually(lambda: ("mod_event_pusher_push_sent", {"count": 1}) in seen)
            # 410: MongoosePush says the device is gone; the registration goes with it.
            fake.status = 410
            bob.send_message(mto="alice@localhost", mbody="three", mtype="chat")
            await asyncio.wait_for(fake.requests.get(), 5)
            store = server.modules["mod_event_pusher"].store

            async def gone() -> bool:
                return not await store.registrations("localhost", "alice")
            for _ in range(50):
                if await gone():
                    break
                await asyncio.sleep(0.1)
            assert await gone()
        finally:
            await disconnect(bob)
        # Nothing was lost: the three messages wait offline for alice.
        alice = await connect(server, "alice@localhost/phone", "secret")
        got: list[str] = []
        alice.add_event_handler("message", lambda m: got.append(m["body"]))
        try:
            alice.send_presence()
            await eventually(lambda: len(got) == 3)
            assert got == ["one", "two", "three"]
        finally:
            await disconnect(alice)


async def test_registration_without_device_id_fails_and_is_counted(tmp_path: Path) -> None:
    async with mongoosepush_server(tmp_path) as (server, fake):
        seen = record_events(server)
        await enable_and_leave(server, service="fcm")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="hi", mtype="chat")
            await eventually(lambda: ("mod_event_pusher_push_sent", {"failure_count": 1})
                             in seen)
            assert ("mod_push_service_mongoosepush_sent", {"failure_count": 1}) in seen
            assert fake.requests.empty()
        finally:
            await disconnect(bob)


BASE = """
[general]
hosts = ["localhost"]

[outgoing_pools.http.mp.connection]
host = "http://127.0.0.1:8443"
"""


@pytest.mark.parametrize(("toml", "problem"), [
    ('[modules.mod_push_service_mongoosepush]\npool_name = "nope"',
     "modules.mod_push_service_mongoosepush.pool_name: pool 'nope' is not defined in "
     "[outgoing_pools.http]"),
    ('[modules.mod_push_service_mongoosepush]\npool_name = "mp"\napi_version = "v2"',
     "modules.mod_push_service_mongoosepush.api_version: API 'v2' is not available in this "
     "version of Suricate (only v3)"),
    ('[modules.mod_push_service_mongoosepush]\npool_name = "mp"\nmax_http_connections = -1',
     "modules.mod_push_service_mongoosepush.max_http_connections: expected a non-negative "
     "integer, got -1"),
])
def test_config_errors_name_the_path(tmp_path: Path, toml: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + toml, tmp_path)
    assert problem in [str(p) for p in err.value.problems]


def test_pool_name_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "[modules.mod_push_service_mongoosepush]", tmp_path)
    assert any("modules.mod_push_service_mongoosepush.pool_name" in str(p)
               for p in err.value.problems)


@pytest.mark.parametrize("tls", ['tls.verify_mode = "none"', 'tls.cacertfile = "CERT"'])
async def test_pool_tls_reaches_a_self_signed_mongoosepush(tmp_path: Path, tls: str) -> None:
    """The pool's tls table is used: MongoosePush's self-signed certificate is accepted
    with verify_mode = "none", or verified (and its name) against it as cacertfile."""
    async with mongoosepush_server(tmp_path, tls) as (server, fake):
        await enable_and_leave(server, device_id="d1", service="fcm")
        bob = await connect(server, "bob@localhost/desk", "secret")
        try:
            bob.send_message(mto="alice@localhost", mbody="over https", mtype="chat")
            path, body = await asyncio.wait_for(fake.requests.get(), 5)
            assert path == "/push/v3/notification/d1"
            assert body["alert"]["body"] == "over https"
        finally:
            await disconnect(bob)
